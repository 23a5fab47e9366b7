/*
 * Call context: what a handler may ask of its call and keep for its
 * lifetime. Everything lives in the call's arena; one thread (the worker
 * running the call) touches a call, so nothing here locks. The exception
 * is nngrpc_call_cancelled(), which any thread may call: it only reads an
 * atomic flag, or polls a socket.
 */
#include "call.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include <nngrpc/clock.h>

#include "base64.h"

struct call_defer {
	call_defer *d_next;
	void (*d_fn)(void *);
	void *d_arg;
};

void
nngrpc_call_init(nngrpc_call *call)
{
	memset(call, 0, sizeof(*call));
	nngrpc_arena_init(&call->c_arena);
	call->c_deadline = NNGRPC_NO_DEADLINE;
	call->c_cancel_fd = -1;
	call->c_metric = -1;
	call->c_run_us = -1;
}

void
nngrpc_call_fini(nngrpc_call *call)
{
	call_defer *d = call->c_defers;
	while (d != NULL) {
		d->d_fn(d->d_arg);
		d = d->d_next;
	}
	call->c_defers = NULL;
	nngrpc_arena_fini(&call->c_arena);
}

const char *
nngrpc_call_method(const nngrpc_call *call)
{
	return (call->c_method != NULL ? call->c_method : "");
}

const void *
nngrpc_call_impl(const nngrpc_call *call)
{
	return (call->c_impl);
}

void *
nngrpc_call_user(const nngrpc_call *call)
{
	return (call->c_user);
}

int64_t
nngrpc_call_deadline(const nngrpc_call *call)
{
	return (call->c_deadline);
}

bool
nngrpc_call_expired(const nngrpc_call *call)
{
	return (call->c_deadline != NNGRPC_NO_DEADLINE
	    && nngrpc_now_ns() >= call->c_deadline);
}

bool
nngrpc_call_cancelled(const nngrpc_call *call)
{
	struct pollfd p;

	if (call->c_cancel != NULL
	    && atomic_load_explicit(call->c_cancel, memory_order_acquire)) {
		return (true);
	}
	if (call->c_cancel_fd < 0) {
		return (false);
	}
	/* Readable: the front end's cancel frame, or its end of file (it
	 * gave up on this worker); either stays until the call ends. */
	p = (struct pollfd) { .fd = call->c_cancel_fd, .events = POLLIN };
	return (poll(&p, 1, 0) > 0);
}

const char *
nngrpc_call_request_id(const nngrpc_call *call)
{
	return (call->c_request_id != NULL ? call->c_request_id : "");
}

const char *
nngrpc_call_peer(nngrpc_call *call)
{
	nng_sockaddr sa;
	char         buf[INET6_ADDRSTRLEN + 8];
	char         ip[INET6_ADDRSTRLEN];

	if (call->c_peer != NULL) {
		return (call->c_peer);
	}
	call->c_peer = "unknown";
	if (nng_pipe_id(call->c_pipe) <= 0
	    || nng_pipe_get_addr(call->c_pipe, NNG_OPT_REMADDR, &sa) != 0) {
		return (call->c_peer);
	}
	switch (sa.s_family) {
	case NNG_AF_INET:
		inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
		snprintf(buf, sizeof(buf), "%s:%u", ip,
		    (unsigned) ntohs(sa.s_in.sa_port));
		break;
	case NNG_AF_INET6:
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
		snprintf(buf, sizeof(buf), "[%s]:%u", ip,
		    (unsigned) ntohs(sa.s_in6.sa_port));
		break;
	case NNG_AF_IPC:
		snprintf(buf, sizeof(buf), "ipc");
		break;
	default:
		return (call->c_peer);
	}
	const char *copy = nngrpc_call_strdup(call, buf);
	if (copy != NULL) {
		call->c_peer = copy;
	}
	return (call->c_peer);
}

bool
nngrpc_call_open(const nngrpc_call *call)
{
	return (call->c_open);
}

int64_t
nngrpc_call_queue_us(const nngrpc_call *call)
{
	return (call->c_queue_us);
}

int64_t
nngrpc_call_run_us(const nngrpc_call *call)
{
	return (call->c_run_us);
}

const char *
nngrpc_call_message(const nngrpc_call *call)
{
	return (call->c_message != NULL ? call->c_message : "");
}

/* True when s holds n lower-case hex digits. */
static bool
lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9')
		        || (s[i] >= 'a' && s[i] <= 'f'))) {
			return (false);
		}
	}
	return (true);
}

static bool
all_zero(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '0') {
			return (false);
		}
	}
	return (true);
}

/* The trace-id of a W3C traceparent value, "VV-TRACEID-PARENTID-FF": 2,
 * 32, 16 and 2 lower-case hex digits, the two ids not all zero. Version ff
 * is invalid; version 00 has exactly these fields, a later one may add
 * "-..." after them. Returns a pointer to the 32 digits in tp, or NULL. */
static const char *
traceparent_id(const char *tp)
{
	size_t n = strlen(tp);
	bool   v00 = strncmp(tp, "00", 2) == 0;

	if (n < 55 || !lower_hex(tp, 2) || strncmp(tp, "ff", 2) == 0
	    || (v00 ? n != 55 : n > 55 && tp[55] != '-')) {
		return (NULL);
	}
	if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-'
	    || !lower_hex(tp + 3, 32) || all_zero(tp + 3, 32)
	    || !lower_hex(tp + 36, 16) || all_zero(tp + 36, 16)
	    || !lower_hex(tp + 53, 2)) {
		return (NULL);
	}
	return (tp + 3);
}

const char *
nngrpc_call_trace_id(nngrpc_call *call)
{
	const char *tp, *id;
	char       *copy;

	if (call->c_trace_parsed) {
		return (call->c_trace_id);
	}
	call->c_trace_parsed = true;
	tp = nngrpc_call_metadata(call, "traceparent");
	if (tp == NULL || (id = traceparent_id(tp)) == NULL
	    || (copy = nngrpc_call_alloc(call, 33)) == NULL) {
		return (NULL);
	}
	memcpy(copy, id, 32);
	copy[32] = '\0';
	call->c_trace_id = copy;
	return (copy);
}

const char *
nngrpc_call_metadata(const nngrpc_call *call, const char *key)
{
	if (call->c_req == NULL) {
		return (NULL);
	}
	for (size_t i = 0; i < call->c_req->n_metadata; i++) {
		const Nngrpc__V1__Request__MetadataEntry *e
		    = call->c_req->metadata[i];
		if (e->key != NULL && strcmp(e->key, key) == 0) {
			return (e->value);
		}
	}
	return (NULL);
}

int
nngrpc_call_set_trailer(nngrpc_call *call, const char *key, const char *value)
{
	Nngrpc__V1__Response__TrailersEntry *e;

	if (call->c_n_trailers == call->c_cap_trailers) {
		size_t cap
		    = call->c_cap_trailers ? call->c_cap_trailers * 2 : 4;
		Nngrpc__V1__Response__TrailersEntry **v
		    = nngrpc_call_alloc(call, cap * sizeof(*v));
		if (v == NULL) {
			return (NNG_ENOMEM);
		}
		if (call->c_n_trailers > 0) {
			memcpy(v, call->c_trailers,
			    call->c_n_trailers * sizeof(*v));
		}
		call->c_trailers = v;
		call->c_cap_trailers = cap;
	}
	if ((e = nngrpc_call_alloc(call, sizeof(*e))) == NULL) {
		return (NNG_ENOMEM);
	}
	nngrpc__v1__response__trailers_entry__init(e);
	e->key = nngrpc_call_strdup(call, key);
	e->value = nngrpc_call_strdup(call, value);
	if (e->key == NULL || e->value == NULL) {
		return (NNG_ENOMEM);
	}
	call->c_trailers[call->c_n_trailers++] = e;
	return (0);
}

/* True when key ends in "-bin": its value carries bytes. */
static bool
binary_key(const char *key)
{
	size_t n = strlen(key);

	return (n >= 4 && memcmp(key + n - 4, "-bin", 4) == 0);
}

const uint8_t *
nngrpc_call_metadata_bin(nngrpc_call *call, const char *key, size_t *lenp)
{
	const char *text;
	uint8_t    *out;
	size_t      len;

	if (!binary_key(key)
	    || (text = nngrpc_call_metadata(call, key)) == NULL) {
		return (NULL);
	}
	len = strlen(text);
	if ((out = nngrpc_call_alloc(call, nngrpc_base64_decoded_max(len)))
	        == NULL
	    || !nngrpc_base64_decode(text, len, out, lenp)) {
		return (NULL);
	}
	return (out);
}

int
nngrpc_call_set_trailer_bin(
    nngrpc_call *call, const char *key, const void *value, size_t len)
{
	char *text;

	if (!binary_key(key)) {
		return (NNG_EINVAL);
	}
	if (len > (SIZE_MAX - 1) / 4 * 3
	    || (text = nngrpc_call_alloc(
	            call, nngrpc_base64_encoded_len(len) + 1))
	        == NULL) {
		return (NNG_ENOMEM);
	}
	nngrpc_base64_encode(value, len, text);
	return (nngrpc_call_set_trailer(call, key, text));
}

void *
nngrpc_call_alloc(nngrpc_call *call, size_t size)
{
	void *p = nngrpc_arena_alloc(&call->c_arena, size);

	if (p == NULL) {
		call->c_oom = true;
	}
	return (p);
}

ProtobufCMessage *
nngrpc_call_new_message(
    nngrpc_call *call, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = nngrpc_call_alloc(call, desc->sizeof_message);

	if (m != NULL) {
		desc->message_init(m);
	}
	return (m);
}

/* Bytes of one element of a repeated field's array, as protobuf-c lays
 * them out. */
static size_t
element_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return (sizeof(int32_t));
	case PROTOBUF_C_TYPE_FLOAT:
		return (sizeof(float));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return (sizeof(int64_t));
	case PROTOBUF_C_TYPE_DOUBLE:
		return (sizeof(double));
	case PROTOBUF_C_TYPE_BOOL:
		return (sizeof(protobuf_c_boolean));
	case PROTOBUF_C_TYPE_BYTES:
		return (sizeof(ProtobufCBinaryData));
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
	default:
		return (sizeof(void *));
	}
}

/* Points each of the n pointers of arr at a new, initialised message of
 * type desc, all in one allocation. */
static bool
new_messages(nngrpc_call *call, const ProtobufCMessageDescriptor *desc,
    void **arr, size_t n)
{
	char *structs;

	if (n > SIZE_MAX / desc->sizeof_message
	    || (structs = nngrpc_call_alloc(call, n * desc->sizeof_message))
	        == NULL) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		arr[i] = structs + i * desc->sizeof_message;
		desc->message_init(arr[i]);
	}
	return (true);
}

void *
nngrpc_call_new_repeated(
    nngrpc_call *call, ProtobufCMessage *msg, unsigned field, size_t n)
{
	const ProtobufCFieldDescriptor *f
	    = protobuf_c_message_descriptor_get_field(msg->descriptor, field);
	size_t size;
	void  *arr;

	if (f == NULL || f->label != PROTOBUF_C_LABEL_REPEATED) {
		return (NULL);
	}
	size = element_size(f);
	if (n > SIZE_MAX / size
	    || (arr = nngrpc_call_alloc(call, n * size)) == NULL) {
		return (NULL);
	}
	memset(arr, 0, n * size);
	if (f->type == PROTOBUF_C_TYPE_MESSAGE
	    && !new_messages(call, f->descriptor, arr, n)) {
		return (NULL);
	}
	if (f->type == PROTOBUF_C_TYPE_STRING) {
		for (size_t i = 0; i < n; i++) {
			((const char **) arr)[i] = "";
		}
	}
	*(void **) ((char *) msg + f->offset) = arr;
	*(size_t *) ((char *) msg + f->quantifier_offset) = n;
	return (arr);
}

char *
nngrpc_call_strdup(nngrpc_call *call, const char *s)
{
	size_t n = strlen(s) + 1;
	char  *p = nngrpc_call_alloc(call, n);
	if (p != NULL) {
		memcpy(p, s, n);
	}
	return (p);
}

int
nngrpc_call_defer(nngrpc_call *call, void (*fn)(void *), void *arg)
{
	call_defer *d = nngrpc_call_alloc(call, sizeof(*d));
	if (d == NULL) {
		fn(arg);
		return (NNG_ENOMEM);
	}
	d->d_fn = fn;
	d->d_arg = arg;
	d->d_next = call->c_defers;
	call->c_defers = d;
	return (0);
}

/* Length of the valid UTF-8 sequence at s, of at most n bytes (RFC 3629:
 * no overlongs, no surrogates, nothing past U+10FFFF), or 0 when it is
 * not one. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80) {
		return (1);
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		return (n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0);
	}
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		unsigned char lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		unsigned char hi = s[0] == 0xed ? 0x9f : 0xbf;
		return (
		    n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80
		        ? 3
		        : 0);
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		unsigned char lo = s[0] == 0xf0 ? 0x90 : 0x80;
		unsigned char hi = s[0] == 0xf4 ? 0x8f : 0xbf;
		return (n >= 4 && s[1] >= lo && s[1] <= hi
		            && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
		        ? 4
		        : 0);
	}
	return (0);
}

/* Makes the len bytes at buf valid UTF-8 in place: each byte that does
 * not start a valid sequence becomes '?'. The status message is a proto3
 * string, and a client's parser rejects the whole reply when it is not
 * valid UTF-8; messages echo client input. NUL is valid and stays. */
static void
utf8_sanitize(char *buf, size_t len)
{
	unsigned char *s = (unsigned char *) buf;
	size_t         i = 0;

	while (i < len) {
		size_t n = utf8_len(s + i, len - i);
		if (n == 0) {
			s[i] = '?';
			n = 1;
		}
		i += n;
	}
}

/* The length of the longest prefix of msg (len bytes) of at most
 * NNGRPC_MAX_STATUS_MESSAGE bytes that ends on a character boundary:
 * before a byte that is not a UTF-8 continuation byte. At most 3 bytes
 * are given up (a character has at most 3 continuation bytes); a cut in
 * invalid bytes is then sanitized like them. */
static size_t
message_cut(const char *msg, size_t len)
{
	size_t cut = NNGRPC_MAX_STATUS_MESSAGE;

	if (len <= cut) {
		return (len);
	}
	for (int i = 0; i < 3 && ((unsigned char) msg[cut] & 0xc0) == 0x80;
	     i++) {
		cut--;
	}
	return (cut);
}

/* Sets the call's status message to len bytes of msg, cut and sanitized
 * as nngrpc.h says. Out of memory leaves the message empty; the code
 * still goes out. */
static void
set_message(nngrpc_call *call, const char *msg, size_t len)
{
	char *copy;

	len = message_cut(msg, len);
	call->c_message = NULL;
	call->c_message_len = 0;
	if ((copy = nngrpc_call_alloc(call, len + 1)) == NULL) {
		return;
	}
	memcpy(copy, msg, len);
	copy[len] = '\0';
	utf8_sanitize(copy, len);
	call->c_message = copy;
	call->c_message_len = len;
}

nngrpc_status
nngrpc_call_error(nngrpc_call *call, nngrpc_status code, const char *fmt, ...)
{
	/* One byte past the limit, so message_cut() sees where the cut
	 * falls; vsnprintf() adds the NUL. */
	char    buf[NNGRPC_MAX_STATUS_MESSAGE + 2];
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
	}
	set_message(call, buf,
	    (size_t) n < sizeof(buf) - 1 ? (size_t) n : sizeof(buf) - 1);
	return (code);
}

nngrpc_status
nngrpc_call_error_len(
    nngrpc_call *call, nngrpc_status code, const char *message, size_t len)
{
	set_message(
	    call, message != NULL ? message : "", message != NULL ? len : 0);
	return (code);
}
