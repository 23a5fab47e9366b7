/*
 * Envelope codec: nngrpc.v1.Request in, nngrpc.v1.Response out
 * (proto/nngrpc/v1/rpc.proto).
 *
 * Encoding is buffer-based: nngrpc_envelope_pack() measures a reply once
 * and writes it into memory that an allocator callback hands out (a plain
 * buffer, shared memory, an nng_msg's body); nngrpc_envelope_encode() is
 * that with an nng_msg. Pure functions of their arguments: any thread.
 */
#ifndef NNGRPC_ENVELOPE_H
#define NNGRPC_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "arena.h"
#include "nngrpc/v1/rpc.pb-c.h"

/* Decodes a request envelope into arena memory. Borrows data. Returns the
 * request (owned by the arena) or NULL when data is not a valid envelope. */
Nngrpc__V1__Request *nngrpc_envelope_decode(
    nngrpc_arena *arena, const uint8_t *data, size_t len);

/* A response envelope to encode: the fields of nngrpc.v1.Response, with
 * the message by length (it may hold NUL bytes; protobuf-c's strings stop
 * at the first) and the payload either packed in place from output (no
 * intermediate copy) or given as bytes. Everything is borrowed. */
typedef struct nngrpc_reply {
	int32_t                                     code;
	const char                                 *message; /* or NULL */
	size_t                                      message_len;
	Nngrpc__V1__Response__TrailersEntry *const *trailers;
	size_t                                      n_trailers;
	uint64_t                                    queue_us;
	uint64_t                                    run_us;
	/* The payload: output packed as it when not NULL, else the
	 * payload_len bytes at payload (NULL when 0). */
	const ProtobufCMessage *output;
	const uint8_t          *payload;
	size_t                  payload_len;
} nngrpc_reply;

/* Hands out len bytes for an encoded envelope, or NULL when out of
 * memory; arg is the caller's. With len 0 (an OK reply with nothing in
 * it encodes to no bytes at all) its result is ignored. */
typedef uint8_t *(*nngrpc_envelope_alloc_fn)(void *arg, size_t len);

/* Encodes r: measures it once, gets exactly that many bytes from
 * alloc(arg, len) and writes the envelope there; *lenp is the length.
 * Returns 0, or NNG_ENOMEM when alloc failed (nothing written). */
int nngrpc_envelope_pack(const nngrpc_reply *r, nngrpc_envelope_alloc_fn alloc,
    void *arg, size_t *lenp);

/* nngrpc_envelope_pack() into a new nng_msg. Returns new: *msgp, which the
 * caller sends or frees. Returns 0 or NNG_ENOMEM. */
int nngrpc_envelope_encode(const nngrpc_reply *r, nng_msg **msgp);

/* The trailer that tells a client the handler never ran, so even a call
 * that is not idempotent may go to another server (docs/compatibility.md).
 * Its value is "1". */
#define NNGRPC_NOT_RUN_KEY "nngrpc-not-run"

/* Encodes a response with only a status code and message, for answers the
 * server gives without dispatching a call (queue full, draining, shed).
 * not_run adds the trailer NNGRPC_NOT_RUN_KEY: "1"; set it only when no
 * handler ran for the request. Returns new: *msgp. Returns 0 or
 * NNG_ENOMEM. */
int nngrpc_envelope_status(
    int code, const char *message, bool not_run, nng_msg **msgp);

#endif /* NNGRPC_ENVELOPE_H */
