/*
 * Envelope codec. Decoding goes into the call's arena, so one free ends
 * it. Encoding packs straight into an nng_msg through a ProtobufCBuffer
 * that appends to the message, and writes the payload field by hand
 * after the rest, packing the output message in place: fields may come in
 * any order on the wire, and this saves a copy of every payload.
 */
#include "envelope.h"

#include <string.h>

#include "wire.h"

typedef struct {
	ProtobufCBuffer base;
	nng_msg        *msg;
	int             rv; /* first append error */
} msg_buffer;

static void
msg_buffer_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
	msg_buffer *mb = (msg_buffer *) buf;
	if (mb->rv == 0) {
		mb->rv = nng_msg_append(mb->msg, data, len);
	}
}

Nngrpc__V1__Request *
nngrpc_envelope_decode(nngrpc_arena *arena, const uint8_t *data, size_t len)
{
	return (nngrpc__v1__request__unpack(&arena->a_pb, len, data));
}

int
nngrpc_envelope_encode(const Nngrpc__V1__Response *resp,
    const ProtobufCMessage *output, nng_msg **msgp)
{
	Nngrpc__V1__Response head = *resp;
	msg_buffer           mb;
	size_t               out_len = 0;
	size_t               size;
	int                  rv;

	if (output != NULL) {
		head.payload.len = 0;
		head.payload.data = NULL;
	}
	size = nngrpc__v1__response__get_packed_size(&head);
	if (output != NULL) {
		out_len = protobuf_c_message_get_packed_size(output);
		size += NNGRPC_WIRE_LEN_HEADER_MAX + out_len;
	}
	if ((rv = nng_msg_alloc(&mb.msg, 0)) != 0) {
		return (rv);
	}
	if ((rv = nng_msg_reserve(mb.msg, size)) != 0) {
		nng_msg_free(mb.msg);
		return (rv);
	}
	mb.base.append = msg_buffer_append;
	mb.rv = 0;
	nngrpc__v1__response__pack_to_buffer(&head, &mb.base);
	if (output != NULL && out_len > 0) {
		uint8_t hdr[NNGRPC_WIRE_LEN_HEADER_MAX];
		size_t  n = nngrpc_wire_put_len_header(
		     hdr, NNGRPC_WIRE_RESPONSE_PAYLOAD, out_len);
		msg_buffer_append(&mb.base, n, hdr);
		protobuf_c_message_pack_to_buffer(output, &mb.base);
	}
	if (mb.rv != 0) {
		nng_msg_free(mb.msg);
		return (mb.rv);
	}
	*msgp = mb.msg;
	return (0);
}

int
nngrpc_envelope_status(int code, const char *message, nng_msg **msgp)
{
	Nngrpc__V1__Response resp = NNGRPC__V1__RESPONSE__INIT;

	resp.code = code;
	resp.message = (char *) (message != NULL ? message : "");
	return (nngrpc_envelope_encode(&resp, NULL, msgp));
}
