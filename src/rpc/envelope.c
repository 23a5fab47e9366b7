/*
 * Envelope codec. Decoding goes into the call's arena, so one free ends
 * it. Encoding measures the reply, allocates its exact size once and
 * writes it flat: protobuf-c packs the head (code, trailers, timings),
 * then the message and the payload follow by hand, the payload's output
 * message packed in place. Fields may come in any order on the wire;
 * writing these two by hand carries a message with NUL bytes (protobuf-c
 * writes strings up to their first NUL) and saves a copy of every
 * payload.
 */
#include "envelope.h"

#include <string.h>

#include "wire.h"

Nngrpc__V1__Request *
nngrpc_envelope_decode(nngrpc_arena *arena, const uint8_t *data, size_t len)
{
	return (nngrpc__v1__request__unpack(&arena->a_pb, len, data));
}

/* The sizes of a reply's parts, measured once. */
typedef struct {
	Nngrpc__V1__Response head; /* without message and payload */
	size_t               head_len;
	size_t               payload_len; /* output's packed size, or bytes */
	size_t               total;
} measured;

static void
measure(const nngrpc_reply *r, measured *m)
{
	Nngrpc__V1__Response head = NNGRPC__V1__RESPONSE__INIT;

	head.code = r->code;
	head.message = (char *) "";
	head.trailers = (Nngrpc__V1__Response__TrailersEntry **) r->trailers;
	head.n_trailers = r->n_trailers;
	head.queue_us = r->queue_us;
	head.run_us = r->run_us;
	m->head = head;
	m->head_len = nngrpc__v1__response__get_packed_size(&head);
	m->payload_len = r->output != NULL
	    ? protobuf_c_message_get_packed_size(r->output)
	    : r->payload_len;
	m->total = m->head_len;
	if (r->message_len > 0) {
		m->total += nngrpc_wire_len_header_size(
		                NNGRPC_WIRE_RESPONSE_MESSAGE, r->message_len)
		    + r->message_len;
	}
	if (m->payload_len > 0) {
		m->total += nngrpc_wire_len_header_size(
		                NNGRPC_WIRE_RESPONSE_PAYLOAD, m->payload_len)
		    + m->payload_len;
	}
}

/* Writes a length-delimited field at p; returns the end of it. */
static uint8_t *
put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
	p += nngrpc_wire_put_len_header(p, field, len);
	memcpy(p, data, len);
	return (p + len);
}

int
nngrpc_envelope_pack(const nngrpc_reply *r, nngrpc_envelope_alloc_fn alloc,
    void *arg, size_t *lenp)
{
	measured m;
	uint8_t *buf, *p;

	measure(r, &m);
	if ((buf = alloc(arg, m.total)) == NULL && m.total > 0) {
		return (NNG_ENOMEM);
	}
	*lenp = m.total;
	if (m.total == 0) {
		return (0);
	}
	p = buf + nngrpc__v1__response__pack(&m.head, buf);
	if (r->message_len > 0) {
		p = put_bytes(p, NNGRPC_WIRE_RESPONSE_MESSAGE, r->message,
		    r->message_len);
	}
	if (m.payload_len > 0 && r->output == NULL) {
		p = put_bytes(p, NNGRPC_WIRE_RESPONSE_PAYLOAD, r->payload,
		    m.payload_len);
	} else if (m.payload_len > 0) {
		p += nngrpc_wire_put_len_header(
		    p, NNGRPC_WIRE_RESPONSE_PAYLOAD, m.payload_len);
		p += protobuf_c_message_pack(r->output, p);
	}
	(void) p; /* == buf + m.total */
	return (0);
}

/* An nngrpc_envelope_alloc_fn that makes an nng_msg of that length. */
static uint8_t *
msg_alloc(void *arg, size_t len)
{
	nng_msg **msgp = arg;

	if (nng_msg_alloc(msgp, len) != 0) {
		*msgp = NULL;
		return (NULL);
	}
	return (nng_msg_body(*msgp));
}

int
nngrpc_envelope_encode(const nngrpc_reply *r, nng_msg **msgp)
{
	nng_msg *msg = NULL;
	size_t   len;

	if (nngrpc_envelope_pack(r, msg_alloc, &msg, &len) != 0
	    || msg == NULL) {
		return (NNG_ENOMEM);
	}
	*msgp = msg;
	return (0);
}

int
nngrpc_envelope_status(
    int code, const char *message, bool not_run, nng_msg **msgp)
{
	Nngrpc__V1__Response__TrailersEntry trailer
	    = NNGRPC__V1__RESPONSE__TRAILERS_ENTRY__INIT;
	Nngrpc__V1__Response__TrailersEntry *trailers[1] = { &trailer };
	nngrpc_reply                         r = { .code = code };

	if (message != NULL) {
		r.message = message;
		r.message_len = strlen(message);
	}
	if (not_run) {
		trailer.key = (char *) NNGRPC_NOT_RUN_KEY;
		trailer.value = (char *) "1";
		r.trailers = trailers;
		r.n_trailers = 1;
	}
	return (nngrpc_envelope_encode(&r, msgp));
}
