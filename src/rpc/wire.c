/*
 * The protobuf wire format by hand (see wire.h for why). Keys are varints
 * of (field << 3 | wire type); a reader that meets an unknown field skips
 * it by its wire type, and fails on the group types (3, 4), which proto3
 * has no use for and protobuf-c does not decode either.
 */
#include "wire.h"

#include <string.h>

size_t
nngrpc_wire_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t) v;
	return (n);
}

size_t
nngrpc_wire_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return (n);
}

size_t
nngrpc_wire_len_header_size(uint32_t field, size_t len)
{
	return (
	    nngrpc_wire_varint_size(((uint64_t) field << 3) | NNGRPC_WIRE_LEN)
	    + nngrpc_wire_varint_size(len));
}

size_t
nngrpc_wire_put_len_header(uint8_t *out, uint32_t field, size_t len)
{
	size_t n = nngrpc_wire_put_varint(
	    out, ((uint64_t) field << 3) | NNGRPC_WIRE_LEN);

	return (n + nngrpc_wire_put_varint(out + n, len));
}

bool
nngrpc_wire_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t c = *(*p)++;
		r |= (uint64_t) (c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			*v = r;
			return (true);
		}
	}
	return (false);
}

bool
nngrpc_wire_peek_method(
    const uint8_t *body, size_t len, const char **namep, size_t *lenp)
{
	const uint8_t *p = body;
	const uint8_t *end = body + len;
	uint64_t       key, n;

	if (!nngrpc_wire_get_varint(&p, end, &key)
	    || key
	        != (((uint64_t) NNGRPC_WIRE_REQUEST_METHOD << 3)
	            | NNGRPC_WIRE_LEN)
	    || !nngrpc_wire_get_varint(&p, end, &n)
	    || n > (uint64_t) (end - p)) {
		return (false);
	}
	*namep = (const char *) p;
	*lenp = (size_t) n;
	return (true);
}

/* Reads the length of a length-delimited value at *p and points *datap
 * at its bytes; advances *p past them. */
static bool
get_len(
    const uint8_t **p, const uint8_t *end, const uint8_t **datap, size_t *lenp)
{
	uint64_t n;

	if (!nngrpc_wire_get_varint(p, end, &n) || n > (uint64_t) (end - *p)) {
		return (false);
	}
	*datap = *p;
	*lenp = (size_t) n;
	*p += n;
	return (true);
}

/* Skips the value of a field of wire type wt at *p. */
static bool
skip_value(const uint8_t **p, const uint8_t *end, unsigned wt)
{
	const uint8_t *data;
	size_t         len;
	uint64_t       v;
	size_t         fixed = wt == NNGRPC_WIRE_I64 ? 8 : 4;

	switch (wt) {
	case NNGRPC_WIRE_VARINT:
		return (nngrpc_wire_get_varint(p, end, &v));
	case NNGRPC_WIRE_LEN:
		return (get_len(p, end, &data, &len));
	case NNGRPC_WIRE_I64:
	case NNGRPC_WIRE_I32:
		if ((size_t) (end - *p) < fixed) {
			return (false);
		}
		*p += fixed;
		return (true);
	default:
		return (false);
	}
}

/* A metadata map entry (key = 1, value = 2; either may be absent, and
 * the last of each counts) at data: true with its key and value. */
static bool
scan_entry(const uint8_t *data, size_t len, const uint8_t **kp, size_t *klp,
    const uint8_t **vp, size_t *vlp)
{
	const uint8_t *p = data, *end = data + len;
	uint64_t       key;

	*kp = *vp = data;
	*klp = *vlp = 0;
	while (p < end) {
		if (!nngrpc_wire_get_varint(&p, end, &key)) {
			return (false);
		}
		if ((key == (1 << 3 | NNGRPC_WIRE_LEN)
		        && !get_len(&p, end, kp, klp))
		    || (key == (2 << 3 | NNGRPC_WIRE_LEN)
		        && !get_len(&p, end, vp, vlp))
		    || (key != (1 << 3 | NNGRPC_WIRE_LEN)
		        && key != (2 << 3 | NNGRPC_WIRE_LEN)
		        && !skip_value(&p, end, (unsigned) (key & 7)))) {
			return (false);
		}
	}
	return (true);
}

bool
nngrpc_wire_peek_metadata(const uint8_t *body, size_t len, const char *key,
    const char **valuep, size_t *lenp)
{
	const uint8_t *p = body, *end = body + len;
	size_t         n = strlen(key);
	uint64_t       k;

	while (p < end) {
		const uint8_t *data, *kp, *vp;
		size_t         dlen, kl, vl;

		if (!nngrpc_wire_get_varint(&p, end, &k)) {
			return (false);
		}
		if (k
		    != ((uint64_t) NNGRPC_WIRE_REQUEST_METADATA << 3
		        | NNGRPC_WIRE_LEN)) {
			if (!skip_value(&p, end, (unsigned) (k & 7))) {
				return (false);
			}
			continue;
		}
		if (!get_len(&p, end, &data, &dlen)
		    || !scan_entry(data, dlen, &kp, &kl, &vp, &vl)) {
			return (false);
		}
		if (kl == n && memcmp(kp, key, n) == 0) {
			*valuep = (const char *) vp;
			*lenp = vl;
			return (true);
		}
	}
	return (false);
}

/* The wire type of a response field this scan reads, or -1 for one it
 * skips. */
static int
response_wire_type(uint64_t field)
{
	switch (field) {
	case NNGRPC_WIRE_RESPONSE_CODE:
	case NNGRPC_WIRE_RESPONSE_QUEUE_US:
	case NNGRPC_WIRE_RESPONSE_RUN_US:
		return (NNGRPC_WIRE_VARINT);
	case NNGRPC_WIRE_RESPONSE_MESSAGE:
	case NNGRPC_WIRE_RESPONSE_PAYLOAD:
		return (NNGRPC_WIRE_LEN);
	default:
		return (-1);
	}
}

/* Reads the value of a field response_wire_type() knows. */
static bool
scan_field(const uint8_t **p, const uint8_t *end, uint64_t field,
    nngrpc_wire_response *r)
{
	const uint8_t *data;
	uint64_t       v = 0;

	switch (field) {
	case NNGRPC_WIRE_RESPONSE_MESSAGE:
		if (!get_len(p, end, &data, &r->message_len)) {
			return (false);
		}
		r->message = (const char *) data;
		return (true);
	case NNGRPC_WIRE_RESPONSE_PAYLOAD:
		return (get_len(p, end, &r->payload, &r->payload_len));
	default:
		break;
	}
	if (!nngrpc_wire_get_varint(p, end, &v)) {
		return (false);
	}
	if (field == NNGRPC_WIRE_RESPONSE_CODE) {
		/* An int32 goes on the wire sign-extended to 64 bits. */
		r->code = (int32_t) (uint32_t) v;
	} else if (field == NNGRPC_WIRE_RESPONSE_QUEUE_US) {
		r->queue_us = v;
	} else {
		r->run_us = v;
	}
	return (true);
}

bool
nngrpc_wire_scan_response(
    const uint8_t *buf, size_t len, nngrpc_wire_response *r)
{
	const uint8_t *p = buf;
	const uint8_t *end = buf + len;

	memset(r, 0, sizeof(*r));
	r->message = "";
	while (p < end) {
		uint64_t key;
		unsigned wt;
		int      want;

		if (!nngrpc_wire_get_varint(&p, end, &key)
		    || (key >> 3) == 0) {
			return (false);
		}
		wt = (unsigned) (key & 7);
		want = response_wire_type(key >> 3);
		if (want < 0) {
			if (!skip_value(&p, end, wt)) {
				return (false);
			}
			continue;
		}
		/* A known field with another wire type: a decoder fails. */
		if ((unsigned) want != wt
		    || !scan_field(&p, end, key >> 3, r)) {
			return (false);
		}
	}
	return (true);
}
