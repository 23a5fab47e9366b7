/*
 * Envelope codec: nngrpc.v1.Request in, nngrpc.v1.Response out
 * (proto/nngrpc/v1/rpc.proto).
 */
#ifndef NNGRPC_ENVELOPE_H
#define NNGRPC_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "arena.h"
#include "nngrpc/v1/rpc.pb-c.h"

/* Decodes a request envelope into arena memory. Borrows data. Returns the
 * request (owned by the arena) or NULL when data is not a valid envelope. */
Nngrpc__V1__Request *nngrpc_envelope_decode(
    nngrpc_arena *arena, const uint8_t *data, size_t len);

/* Encodes a response envelope. When output is not NULL it is packed as
 * the payload straight into the message, with no intermediate copy, and
 * resp->payload is ignored; else resp->payload (already packed) is sent.
 * Borrows resp and output. Returns new: *msgp, which the caller sends or
 * frees. Returns 0 or NNG_ENOMEM. */
int nngrpc_envelope_encode(const Nngrpc__V1__Response *resp,
    const ProtobufCMessage *output, nng_msg **msgp);

/* Encodes a response with only a status code and message, for answers the
 * server gives without running a call (queue full, draining). Returns new:
 * *msgp. Returns 0 or NNG_ENOMEM. */
int nngrpc_envelope_status(int code, const char *message, nng_msg **msgp);

#endif /* NNGRPC_ENVELOPE_H */
