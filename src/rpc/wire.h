/*
 * The protobuf wire format by hand, for the few places that must not pay
 * for a full decode or encode of the envelope (proto/nngrpc/v1/rpc.proto):
 * the server's peek at a request's method on NNG's receive thread, the
 * response encoder that packs the payload in place, and the clients in
 * src/tools that read replies without unpacking them. Everything else
 * uses protobuf-c.
 *
 * Pure functions of their arguments: any thread. Readers borrow the buffer
 * they scan and never read past its end, whatever it holds.
 */
#ifndef NNGRPC_WIRE_H
#define NNGRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wire types (the low three bits of a field's key). */
#define NNGRPC_WIRE_VARINT 0
#define NNGRPC_WIRE_I64    1
#define NNGRPC_WIRE_LEN    2
#define NNGRPC_WIRE_I32    5

/* Longest varint (a uint64_t), and longest key + length header of a
 * length-delimited field. */
#define NNGRPC_WIRE_VARINT_MAX     10
#define NNGRPC_WIRE_LEN_HEADER_MAX (5 + NNGRPC_WIRE_VARINT_MAX)

/* Field numbers of nngrpc.v1.Request and nngrpc.v1.Response.
 * tests/unit/test_wire.c checks them against the generated descriptors. */
enum {
	NNGRPC_WIRE_REQUEST_METHOD = 1,
	NNGRPC_WIRE_REQUEST_TIMEOUT_US = 2,
	NNGRPC_WIRE_REQUEST_METADATA = 3,
	NNGRPC_WIRE_REQUEST_PAYLOAD = 4,
	NNGRPC_WIRE_RESPONSE_CODE = 1,
	NNGRPC_WIRE_RESPONSE_MESSAGE = 2,
	NNGRPC_WIRE_RESPONSE_PAYLOAD = 3,
	NNGRPC_WIRE_RESPONSE_TRAILERS = 4,
	NNGRPC_WIRE_RESPONSE_QUEUE_US = 5,
	NNGRPC_WIRE_RESPONSE_RUN_US = 6,
};

/* Writes v as a varint into out (NNGRPC_WIRE_VARINT_MAX bytes at least)
 * and returns the number of bytes written. */
size_t nngrpc_wire_put_varint(uint8_t *out, uint64_t v);

/* The number of bytes nngrpc_wire_put_varint() writes for v. */
size_t nngrpc_wire_varint_size(uint64_t v);

/* The number of bytes nngrpc_wire_put_len_header() writes. */
size_t nngrpc_wire_len_header_size(uint32_t field, size_t len);

/* Writes the key and the length of a length-delimited field into out
 * (NNGRPC_WIRE_LEN_HEADER_MAX bytes at least); the len bytes of the value
 * follow. Returns the number of bytes written. */
size_t nngrpc_wire_put_len_header(uint8_t *out, uint32_t field, size_t len);

/* Reads a varint at *p, before end, and advances *p past it. Returns false
 * when it is cut off by end or longer than 10 bytes (*p is then
 * undefined between its old value and end). */
bool nngrpc_wire_get_varint(
    const uint8_t **p, const uint8_t *end, uint64_t *v);

/*
 * The method of a request envelope, read from its first field only:
 * protobuf writers emit fields in number order, so the method (field 1)
 * comes first in every envelope a client sends. Returns true and points
 * *namep (into body, not NUL-terminated) and *lenp at it; false when the
 * first field is not a whole method field. A full decode may still find
 * another method later in a hostile envelope: use the peek only for a
 * decision that is safe either way (which thread runs the call).
 */
bool nngrpc_wire_peek_method(
    const uint8_t *body, size_t len, const char **namep, size_t *lenp);

/*
 * The value of request metadata key in a request envelope (body, len), read
 * without decoding the rest: the first entry with that key, as
 * nngrpc_call_metadata() finds. Returns true and points *valuep (into
 * body, not NUL-terminated) and *lenp at it; false when there is none, or
 * the envelope does not scan as far as it (a full decode fails then too).
 */
bool nngrpc_wire_peek_metadata(const uint8_t *body, size_t len,
    const char *key, const char **valuep, size_t *lenp);

/* The fields of a response envelope that clients act on. Strings and bytes
 * point into the scanned buffer (borrowed, not NUL-terminated). */
typedef struct nngrpc_wire_response {
	int32_t        code; /* a status code, or any int32 a server sent */
	const char    *message;
	size_t         message_len;
	const uint8_t *payload;
	size_t         payload_len;
	uint64_t       queue_us;
	uint64_t       run_us;
} nngrpc_wire_response;

/* Scans a response envelope without allocating: fields absent are 0 or
 * empty, and a field that comes twice keeps its last value, as a protobuf
 * decoder does. Trailers and unknown fields are skipped. Returns false when
 * buf is not valid protobuf or a field above has another wire type (a
 * decoder fails on both); *r is then partly written. */
bool nngrpc_wire_scan_response(
    const uint8_t *buf, size_t len, nngrpc_wire_response *r);

#endif /* NNGRPC_WIRE_H */
