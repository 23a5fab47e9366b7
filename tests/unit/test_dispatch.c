/* Dispatch: method lookup, decoding, deadlines, handler results, and the
 * typed glue's registration. Handlers here are generic nngrpc_method_fn
 * over the Testing service's descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "auth.h"
#include "dispatch.h"
#include "encoding.h"
#include "nngrpc/testing/v1/testing.nngrpc.h"
#include "nngrpc/v1/rpc.pb-c.h"
#include "wire.h"

static const nng_pipe no_pipe = NNG_PIPE_INITIALIZER;
static int            handler_runs;
static int            deferred_runs;

static void
count_deferred(void *arg)
{
	(*(int *) arg)++;
}

/* Echo that also checks metadata, sets a trailer and defers a release. */
static nngrpc_status
echo_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	const Nngrpc__Testing__V1__EchoRequest *req = (const void *) in;
	Nngrpc__Testing__V1__EchoResponse      *resp = (void *) out;
	const char *who = nngrpc_call_metadata(call, "who");

	handler_runs++;
	assert_string_equal(
	    nngrpc_call_method(call), "/nngrpc.testing.v1.Testing/Echo");
	assert_int_equal(*(const int *) nngrpc_call_impl(call), 42);
	assert_ptr_equal(nngrpc_call_user(call), &handler_runs);
	assert_null(nngrpc_call_metadata(call, "absent"));
	if (who != NULL) {
		assert_int_equal(nngrpc_call_set_trailer(call, "saw", who), 0);
	}
	assert_int_equal(
	    nngrpc_call_defer(call, count_deferred, &deferred_runs), 0);
	resp->payload = req->payload;
	return (NNGRPC_OK);
}

static nngrpc_status
bad_status_fn(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) call;
	(void) in;
	(void) out;
	handler_runs++;
	return ((nngrpc_status) 99);
}

static nngrpc_status
error_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) in;
	(void) out;
	handler_runs++;
	assert_false(nngrpc_call_expired(call));
	return (nngrpc_call_error(call, NNGRPC_NOT_FOUND, "no hotel %d", 7));
}

/* The flag a cancellable call borrows (the server's record of it on its
 * connection); a handler that sets it sees itself cancelled. */
static atomic_bool cancel_flag;

/* Fail, as a handler that looks for a cancel: sets the flag (as a
 * closing connection would, from another thread) and answers what
 * nngrpc_call_cancelled() says. */
static nngrpc_status
cancel_seen_fn(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) in;
	(void) out;
	handler_runs++;
	if (nngrpc_call_cancelled(call)) {
		return (NNGRPC_INTERNAL); /* not yet: nobody cancelled */
	}
	atomic_store(&cancel_flag, true);
	return (
	    nngrpc_call_cancelled(call) ? NNGRPC_CANCELLED : NNGRPC_INTERNAL);
}

static nngrpc_dispatch *
make_dispatch(void)
{
	static const nngrpc_method_fn fns[4]
	    = { echo_fn, bad_status_fn, NULL };
	nngrpc_dispatch *d;
	int              impl = 42;

	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, &impl, sizeof(impl), &handler_runs),
	    0);
	nngrpc_dispatch_seal(d);
	return (d);
}

/* Builds a request envelope; the caller frees *bufp. */
static size_t
make_request(const char *method, uint64_t timeout_us, const uint8_t *payload,
    size_t len, const char *who, uint8_t **bufp)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e
	    = NNGRPC__V1__REQUEST__METADATA_ENTRY__INIT;
	Nngrpc__V1__Request__MetadataEntry *ep = &e;

	req.method = (char *) method;
	req.timeout_us = timeout_us;
	req.payload.data = (uint8_t *) payload;
	req.payload.len = len;
	if (who != NULL) {
		e.key = "who";
		e.value = (char *) who;
		req.metadata = &ep;
		req.n_metadata = 1;
	}
	*bufp = malloc(nngrpc__v1__request__get_packed_size(&req) + 1);
	return (nngrpc__v1__request__pack(&req, *bufp));
}

static Nngrpc__V1__Response *
call(nngrpc_dispatch *d, const char *method, uint64_t timeout_us,
    const uint8_t *payload, size_t len, const char *who, int64_t queued_ns)
{
	uint8_t              *buf;
	size_t                n;
	nng_msg              *reply;
	Nngrpc__V1__Response *resp;
	int64_t               now = nngrpc_now_ns();

	n = make_request(method, timeout_us, payload, len, who, &buf);
	assert_int_equal(nngrpc_dispatch_call(d, buf, n, no_pipe, NULL,
	                     now - queued_ns, now, &reply),
	    0);
	resp = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_non_null(resp);
	nng_msg_free(reply);
	free(buf);
	return (resp);
}

static void
test_echo_round_trip(void **state)
{
	Nngrpc__Testing__V1__EchoRequest in
	    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
	nngrpc_dispatch *d = make_dispatch();
	uint8_t          buf[64];
	size_t           n;

	(void) state;
	handler_runs = 0;
	deferred_runs = 0;
	in.payload.data = (uint8_t *) "hello";
	in.payload.len = 5;
	n = nngrpc__testing__v1__echo_request__pack(&in, buf);
	Nngrpc__V1__Response *r = call(d, "/nngrpc.testing.v1.Testing/Echo",
	    1000000, buf, n, "alice", 5000);
	assert_int_equal(r->code, NNGRPC_OK);
	assert_int_equal(handler_runs, 1);
	assert_int_equal(deferred_runs, 1);
	assert_true(r->queue_us >= 5);
	assert_int_equal(r->n_trailers, 1);
	assert_string_equal(r->trailers[0]->key, "saw");
	assert_string_equal(r->trailers[0]->value, "alice");
	Nngrpc__Testing__V1__EchoResponse *out
	    = nngrpc__testing__v1__echo_response__unpack(
	        NULL, r->payload.len, r->payload.data);
	assert_non_null(out);
	assert_memory_equal(out->payload.data, "hello", 5);
	nngrpc__testing__v1__echo_response__free_unpacked(out, NULL);
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);
}

static void
test_failures(void **state)
{
	static const struct {
		const char *method;
		const char *payload;
		size_t      len;
		uint64_t    timeout_us;
		int64_t     queued_ns;
		int         code;
		const char *message_part;
		int         runs;
	} cases[] = {
		{ "/nngrpc.testing.v1.Testing/Nope", "", 0, 0, 0,
		    NNGRPC_UNIMPLEMENTED, "unknown method", 0 },
		{ "", "", 0, 0, 0, NNGRPC_UNIMPLEMENTED, "unknown method", 0 },
		{ "/nngrpc.testing.v1.Testing/Fail", "", 0, 0, 0,
		    NNGRPC_UNIMPLEMENTED, "not implemented", 0 },
		{ "/nngrpc.testing.v1.Testing/Echo", "\xff\xff\xff", 3, 0, 0,
		    NNGRPC_INTERNAL, "cannot decode the request payload", 0 },
		/* 1 ms allowed, 5 ms spent queued: never runs. */
		{ "/nngrpc.testing.v1.Testing/Echo", "", 0, 1000, 5000000,
		    NNGRPC_DEADLINE_EXCEEDED, "in the server queue", 0 },
		{ "/nngrpc.testing.v1.Testing/Sleep", "", 0, 0, 0,
		    NNGRPC_UNKNOWN, "not a status code", 1 },
	};
	nngrpc_dispatch *d = make_dispatch();

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		handler_runs = 0;
		Nngrpc__V1__Response *r = call(d, cases[i].method,
		    cases[i].timeout_us, (const uint8_t *) cases[i].payload,
		    cases[i].len, NULL, cases[i].queued_ns);
		assert_int_equal(r->code, cases[i].code);
		assert_non_null(strstr(r->message, cases[i].message_part));
		assert_int_equal(r->payload.len, 0);
		assert_int_equal(handler_runs, cases[i].runs);
		nngrpc__v1__response__free_unpacked(r, NULL);
	}
	nngrpc_dispatch_free(d);
}

/* The receive thread's peek: inline only for a method marked so, found by
 * the first field alone; a name with a NUL in it (from the wire) is no
 * registered name and never read past (found by fuzz_dispatch). */
static void
test_peek_inline(void **state)
{
	static const char with_nul[] = "/nngrpc.testing.v1.Testing/Echo\0xyz";
	nngrpc_dispatch  *d;
	uint8_t          *buf;
	uint8_t           raw[64];
	size_t            n;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(
	    nngrpc_dispatch_add_service(d,
	        &nngrpc__testing__v1__testing__descriptor, NULL,
	        (nngrpc_method_fn[4]) { echo_fn, echo_fn, NULL, NULL }, NULL,
	        0, NULL),
	    0);
	assert_int_equal(nngrpc_dispatch_set_inline(
	                     d, "/nngrpc.testing.v1.Testing/Echo", true),
	    0);
	nngrpc_dispatch_seal(d);

	n = make_request(
	    "/nngrpc.testing.v1.Testing/Echo", 0, NULL, 0, NULL, &buf);
	assert_true(nngrpc_dispatch_peek_inline(d, buf, n));
	free(buf);
	n = make_request(
	    "/nngrpc.testing.v1.Testing/Sleep", 0, NULL, 0, NULL, &buf);
	assert_false(nngrpc_dispatch_peek_inline(d, buf, n));
	free(buf);
	n = make_request(
	    "/nngrpc.testing.v1.Testing/Ech", 0, NULL, 0, NULL, &buf);
	assert_false(nngrpc_dispatch_peek_inline(d, buf, n));
	free(buf);

	/* By hand: field 1 holding the name, a NUL and more bytes. */
	raw[0] = 0x0a;
	raw[1] = (uint8_t) (sizeof(with_nul) - 1);
	memcpy(raw + 2, with_nul, sizeof(with_nul) - 1);
	assert_false(
	    nngrpc_dispatch_peek_inline(d, raw, 2 + sizeof(with_nul) - 1));
	/* The method cut short by the end of the message. */
	assert_false(nngrpc_dispatch_peek_inline(d, raw, 10));
	nngrpc_dispatch_free(d);
}

static void
test_garbage_envelope(void **state)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff };
	nngrpc_dispatch     *d = make_dispatch();
	nng_msg             *reply;

	(void) state;
	int64_t now = nngrpc_now_ns();
	assert_int_equal(nngrpc_dispatch_call(d, garbage, sizeof(garbage),
	                     no_pipe, NULL, now, now, &reply),
	    0);
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_int_equal(r->code, NNGRPC_INTERNAL);
	assert_non_null(strstr(r->message, "request envelope"));
	nngrpc__v1__response__free_unpacked(r, NULL);
	nng_msg_free(reply);
	nngrpc_dispatch_free(d);
}

static void
test_unprintable_method_name(void **state)
{
	char             name[300];
	nngrpc_dispatch *d = make_dispatch();

	(void) state;
	memset(name, '\x01', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	Nngrpc__V1__Response *r = call(d, name, 0, NULL, 0, NULL, 0);
	assert_int_equal(r->code, NNGRPC_UNIMPLEMENTED);
	assert_true(strlen(r->message) < 200);
	assert_null(strchr(r->message, '\x01'));
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);
}

static void
test_error_message(void **state)
{
	static const nngrpc_method_fn fns[4] = { error_fn, NULL, NULL };
	nngrpc_dispatch              *d;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	assert_int_equal(nngrpc_dispatch_count(d), 4);
	nngrpc_dispatch_seal(d);
	Nngrpc__V1__Response *r
	    = call(d, "/nngrpc.testing.v1.Testing/Echo", 0, NULL, 0, NULL, 0);
	assert_int_equal(r->code, NNGRPC_NOT_FOUND);
	assert_string_equal(r->message, "no hotel 7");
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);
}

/* Fails with the request's payload as the status message: by length
 * when the "who" metadata is "len", as a C string through printf else. */
static nngrpc_status
message_fn(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	const Nngrpc__Testing__V1__EchoRequest *req = (const void *) in;
	const char *mode = nngrpc_call_metadata(call, "who");
	char       *text;

	(void) out;
	if (mode != NULL && strcmp(mode, "len") == 0) {
		return (nngrpc_call_error_len(call, NNGRPC_FAILED_PRECONDITION,
		    (const char *) req->payload.data, req->payload.len));
	}
	text = nngrpc_call_alloc(call, req->payload.len + 1);
	assert_non_null(text);
	memcpy(text, req->payload.data, req->payload.len);
	text[req->payload.len] = '\0';
	return (
	    nngrpc_call_error(call, NNGRPC_FAILED_PRECONDITION, "%s", text));
}

/* "€" (3 bytes) n times after prefix ASCII letters; the caller frees it. */
static char *
euros(size_t prefix, size_t n, size_t *lenp)
{
	char *s = malloc(prefix + 3 * n + 1);

	assert_non_null(s);
	memset(s, 'a', prefix);
	for (size_t i = 0; i < n; i++) {
		memcpy(s + prefix + 3 * i, "\xe2\x82\xac", 3);
	}
	*lenp = prefix + 3 * n;
	s[*lenp] = '\0';
	return (s);
}

/* Runs message_fn with msg (len bytes) in mode; checks the status message
 * that comes back is want (want_len bytes), byte for byte. */
static void
check_message(nngrpc_dispatch *d, const char *mode, const char *msg,
    size_t len, const char *want, size_t want_len)
{
	Nngrpc__Testing__V1__EchoRequest in
	    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
	uint8_t             *payload = malloc(len + 16), *buf;
	size_t               n;
	nng_msg             *reply;
	nngrpc_wire_response w;
	int64_t              now = nngrpc_now_ns();

	in.payload.data = (uint8_t *) msg;
	in.payload.len = len;
	n = nngrpc__testing__v1__echo_request__pack(&in, payload);
	n = make_request(
	    "/nngrpc.testing.v1.Testing/Echo", 0, payload, n, mode, &buf);
	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, NULL, now, now, &reply),
	    0);
	assert_true(nngrpc_wire_scan_response(
	    nng_msg_body(reply), nng_msg_len(reply), &w));
	assert_int_equal(w.code, NNGRPC_FAILED_PRECONDITION);
	assert_int_equal(w.message_len, want_len);
	assert_memory_equal(w.message, want, want_len);
	nng_msg_free(reply);
	free(buf);
	free(payload);
}

/* Status messages: up to NNGRPC_MAX_STATUS_MESSAGE bytes byte for byte,
 * NUL included when given by length; longer ones cut on a character
 * boundary; invalid UTF-8 becomes '?'. */
static void
test_status_messages(void **state)
{
	static const nngrpc_method_fn fns[4] = { message_fn, NULL, NULL };
	static const char             nul[] = "before\0after";
	nngrpc_dispatch              *d;
	size_t                        len;
	char                         *m;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	check_message(d, "len", nul, sizeof(nul) - 1, nul, sizeof(nul) - 1);
	check_message(d, "printf", nul, sizeof(nul) - 1, "before", 6);
	for (int i = 0; i < 2; i++) {
		const char *mode = i == 0 ? "len" : "printf";
		m = euros(0, 1000, &len); /* 3000 bytes: exact */
		check_message(d, mode, m, len, m, len);
		free(m);
		m = euros(0, 1667, &len); /* 5001: 1365 whole euros */
		check_message(d, mode, m, len, m, 4095);
		free(m);
		m = euros(4095, 1, &len); /* the cut falls in the euro */
		check_message(d, mode, m, len, m, 4095);
		free(m);
		m = euros(4096, 1, &len); /* right after 4096 bytes */
		check_message(d, mode, m, len, m, 4096);
		free(m);
		m = euros(4094, 1, &len); /* 4097: cut before the euro */
		check_message(d, mode, m, len, m, 4094);
		free(m);
		m = euros(4093, 1, &len); /* 4096: fits */
		check_message(d, mode, m, len, m, 4096);
		free(m);
	}
	check_message(d, "len",
	    "a\xff"
	    "b\xe2\x82",
	    5, "a?b??", 5);
	check_message(d, "len", "", 0, "", 0);
	nngrpc_dispatch_free(d);
}

/* Binary metadata: "x-bin" read as bytes and sent back doubled in
 * "y-bin"; what is not a -bin key, or not base64, gives nothing. */
static nngrpc_status
bin_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	const uint8_t *x;
	uint8_t        two[64];
	size_t         n;

	(void) in;
	(void) out;
	x = nngrpc_call_metadata_bin(call, "x-bin", &n);
	assert_non_null(x);
	assert_true(n <= sizeof(two) / 2);
	memcpy(two, x, n);
	memcpy(two + n, x, n);
	assert_string_equal(nngrpc_call_metadata(call, "x-bin"), "AP8Abw");
	assert_null(nngrpc_call_metadata_bin(call, "plain", &n));
	assert_null(nngrpc_call_metadata_bin(call, "bad-bin", &n));
	assert_null(nngrpc_call_metadata_bin(call, "absent-bin", &n));
	assert_int_equal(
	    nngrpc_call_set_trailer_bin(call, "plain", "x", 1), NNG_EINVAL);
	assert_int_equal(
	    nngrpc_call_set_trailer_bin(call, "y-bin", two, 8), 0);
	assert_int_equal(
	    nngrpc_call_set_trailer_bin(call, "e-bin", NULL, 0), 0);
	return (NNGRPC_OK);
}

static void
test_binary_metadata(void **state)
{
	static const nngrpc_method_fn fns[4] = { bin_fn, NULL, NULL, NULL };
	static const char *const      md[][2] = {
		     { "x-bin", "AP8Abw" }, /* 00 ff 00 6f */
		     { "plain", "AP8Abw" },
		     { "bad-bin", "AP8Ab" }, /* a lone character */
	};
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e[3], *ep[3];
	nngrpc_dispatch                   *d;
	uint8_t                            buf[256];
	nng_msg                           *reply;
	int64_t                            now = nngrpc_now_ns();

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	for (int i = 0; i < 3; i++) {
		nngrpc__v1__request__metadata_entry__init(&e[i]);
		e[i].key = (char *) md[i][0];
		e[i].value = (char *) md[i][1];
		ep[i] = &e[i];
	}
	req.method = "/nngrpc.testing.v1.Testing/Echo";
	req.metadata = ep;
	req.n_metadata = 3;
	size_t n = nngrpc__v1__request__pack(&req, buf);
	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, NULL, now, now, &reply),
	    0);
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_non_null(r);
	assert_int_equal(r->code, NNGRPC_OK);
	assert_int_equal(r->n_trailers, 2);
	assert_string_equal(r->trailers[0]->key, "y-bin");
	assert_string_equal(r->trailers[0]->value, "AP8AbwD/AG8");
	assert_string_equal(r->trailers[1]->key, "e-bin");
	assert_string_equal(r->trailers[1]->value, "");
	nngrpc__v1__response__free_unpacked(r, NULL);
	nng_msg_free(reply);
	nngrpc_dispatch_free(d);
}

/* Calls d with metadata md (n pairs); the reply, unpacked. */
static Nngrpc__V1__Response *
call_md(nngrpc_dispatch *d, const char *method, uint64_t timeout_us,
    const uint8_t *payload, size_t len, const char *const (*md)[2], size_t n,
    int64_t queued_ns)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e[4], *ep[4];
	uint8_t                           *buf;
	nng_msg                           *reply;
	Nngrpc__V1__Response              *r;
	int64_t                            now = nngrpc_now_ns();

	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		nngrpc__v1__request__metadata_entry__init(&e[i]);
		e[i].key = (char *) md[i][0];
		e[i].value = (char *) md[i][1];
		ep[i] = &e[i];
	}
	req.method = (char *) method;
	req.timeout_us = timeout_us;
	req.payload.data = (uint8_t *) payload;
	req.payload.len = len;
	req.metadata = ep;
	req.n_metadata = n;
	buf = malloc(nngrpc__v1__request__get_packed_size(&req) + 1);
	size_t size = nngrpc__v1__request__pack(&req, buf);
	assert_int_equal(nngrpc_dispatch_call(d, buf, size, no_pipe, NULL,
	                     now - queued_ns, now, &reply),
	    0);
	r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_non_null(r);
	nng_msg_free(reply);
	free(buf);
	return (r);
}

/* The value of trailer key, or NULL. */
static const char *
trailer(const Nngrpc__V1__Response *r, const char *key)
{
	for (size_t i = 0; i < r->n_trailers; i++) {
		if (strcmp(r->trailers[i]->key, key) == 0) {
			return (r->trailers[i]->value);
		}
	}
	return (NULL);
}

static nngrpc_status
refuse(nngrpc_call *call, void *arg)
{
	(void) arg;
	return (nngrpc_call_error(call, NNGRPC_PERMISSION_DENIED, "no"));
}

/* Capability trailers on every reply to a request that asks, whatever
 * its code; none unasked; always with an encoding the server lacks. */
static void
test_capability_trailers(void **state)
{
	static const char *const ask[][2] = {
		{ "nngrpc-accept-encoding", "identity" },
	};
	static const char *const br[][2] = { { "nngrpc-encoding", "br" } };
	static const struct nngrpc_interceptor no
	    = { "refuse", refuse, NULL, NULL };
	static const nngrpc_method_fn fns[4] = { echo_fn, NULL, NULL, NULL };
	nngrpc_dispatch              *d = NULL;
	Nngrpc__V1__Response         *r;
	int                           impl = 42;
	const char                   *echo = "/nngrpc.testing.v1.Testing/Echo";

	(void) state;
	for (int pass = 0; pass < 2; pass++) { /* plain, then refusing */
		assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
		assert_int_equal(
		    nngrpc_dispatch_add_service(d,
		        &nngrpc__testing__v1__testing__descriptor, NULL, fns,
		        &impl, sizeof(impl), &handler_runs),
		    0);
		nngrpc_dispatch_set_max_message(d, 5000);
		if (pass == 1) {
			assert_int_equal(
			    nngrpc_dispatch_add_interceptor(d, &no), 0);
		}
		nngrpc_dispatch_seal(d);
		r = call_md(d, echo, 0, NULL, 0, ask, 1, 0);
		assert_int_equal(
		    r->code, pass == 0 ? NNGRPC_OK : NNGRPC_PERMISSION_DENIED);
		assert_string_equal(
		    trailer(r, "nngrpc-accept-encoding"), "zstd,gzip");
		assert_string_equal(
		    trailer(r, "nngrpc-max-message-bytes"), "5000");
		nngrpc__v1__response__free_unpacked(r, NULL);
		if (pass == 1) {
			nngrpc_dispatch_free(d);
			break;
		}
		r = call_md(d, echo, 0, NULL, 0, ask, 0, 0); /* unasked */
		assert_int_equal(r->n_trailers, 0);
		nngrpc__v1__response__free_unpacked(r, NULL);
		r = call_md(d, "/x.Y/Z", 0, NULL, 0, ask, 1, 0);
		assert_int_equal(r->code, NNGRPC_UNIMPLEMENTED);
		assert_non_null(trailer(r, "nngrpc-max-message-bytes"));
		nngrpc__v1__response__free_unpacked(r, NULL);
		/* 1 ms allowed, 5 ms queued */
		r = call_md(d, echo, 1000, NULL, 0, ask, 1, 5000000);
		assert_int_equal(r->code, NNGRPC_DEADLINE_EXCEEDED);
		assert_non_null(trailer(r, "nngrpc-max-message-bytes"));
		nngrpc__v1__response__free_unpacked(r, NULL);
		handler_runs = 0;
		r = call_md(d, echo, 0, NULL, 0, br, 1, 0);
		assert_int_equal(r->code, NNGRPC_UNIMPLEMENTED);
		assert_int_equal(handler_runs, 0);
		assert_string_equal(trailer(r, "nngrpc-not-run"), "1");
		assert_string_equal(
		    trailer(r, "nngrpc-accept-encoding"), "zstd,gzip");
		nngrpc__v1__response__free_unpacked(r, NULL);
		nngrpc_dispatch_free(d);
	}
}

/* A gzip request decompressed for the handler, within the limit; the
 * reply compressed with what the request accepts, above the threshold. */
static void
test_compression(void **state)
{
	static const char *const gz[][2] = {
		{ "nngrpc-encoding", "gzip" },
		{ "nngrpc-accept-encoding", "br, zstd" },
	};
	Nngrpc__Testing__V1__EchoRequest in
	    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
	nngrpc_dispatch *d = make_dispatch(); /* limit: the default, 4 MiB */
	uint8_t          data[3000], packed[3100];
	uint8_t         *z, *out;
	size_t           zlen, n, len;
	nngrpc_arena     a;

	(void) state;
	memset(data, 'q', sizeof(data));
	in.payload.data = data;
	in.payload.len = sizeof(data);
	n = nngrpc__testing__v1__echo_request__pack(&in, packed);
	nngrpc_arena_init(&a);
	assert_int_equal(nngrpc_encoding_compress(
	                     NNGRPC_ENCODING_GZIP, packed, n, &a, &z, &zlen),
	    0);
	Nngrpc__V1__Response *r = call_md(
	    d, "/nngrpc.testing.v1.Testing/Echo", 0, z, zlen, gz, 2, 0);
	assert_int_equal(r->code, NNGRPC_OK);
	assert_string_equal(trailer(r, "nngrpc-encoding"), "zstd");
	assert_true(r->payload.len < 200);
	assert_int_equal(
	    nngrpc_encoding_decompress(NNGRPC_ENCODING_ZSTD, r->payload.data,
	        r->payload.len, 10000, &a, &out, &len),
	    0);
	assert_int_equal(len, n);
	assert_memory_equal(out, packed, n);
	nngrpc__v1__response__free_unpacked(r, NULL);
	/* Under the threshold: sent as it is. */
	r = call_md(
	    d, "/nngrpc.testing.v1.Testing/Echo", 0, NULL, 0, gz + 1, 1, 0);
	assert_int_equal(r->code, NNGRPC_OK);
	assert_null(trailer(r, "nngrpc-encoding"));
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);

	/* A limit of 2000: the 3 KB payload decompresses past it. */
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(
	    nngrpc_dispatch_add_service(d,
	        &nngrpc__testing__v1__testing__descriptor, NULL,
	        (nngrpc_method_fn[4]) { echo_fn, NULL, NULL, NULL },
	        &(int) { 42 }, sizeof(int), &handler_runs),
	    0);
	nngrpc_dispatch_set_max_message(d, 2000);
	nngrpc_dispatch_seal(d);
	handler_runs = 0;
	r = call_md(
	    d, "/nngrpc.testing.v1.Testing/Echo", 0, z, zlen, gz, 1, 0);
	assert_int_equal(r->code, NNGRPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(r->message, "2000"));
	assert_int_equal(handler_runs, 0);
	nngrpc__v1__response__free_unpacked(r, NULL);
	/* Not a gzip stream at all. */
	r = call_md(d, "/nngrpc.testing.v1.Testing/Echo", 0,
	    (const uint8_t *) "xyz", 3, gz, 1, 0);
	assert_int_equal(r->code, NNGRPC_INTERNAL);
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);
	nngrpc_arena_fini(&a);
}

/* A handler whose allocation failed and that says nothing more. */
static nngrpc_status
oom_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) in;
	(void) out;
	assert_null(nngrpc_call_alloc(call, SIZE_MAX));
	return (NNGRPC_RESOURCE_EXHAUSTED);
}

static void
test_out_of_memory_is_said(void **state)
{
	static const nngrpc_method_fn fns[4] = { oom_fn, NULL, NULL };
	nngrpc_dispatch              *d;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	Nngrpc__V1__Response *r
	    = call(d, "/nngrpc.testing.v1.Testing/Echo", 0, NULL, 0, NULL, 0);
	assert_int_equal(r->code, NNGRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(r->message, "out of memory");
	nngrpc__v1__response__free_unpacked(r, NULL);
	nngrpc_dispatch_free(d);
}

static void
test_registration_errors(void **state)
{
	static const nngrpc_method_fn fns[4] = { echo_fn, NULL, NULL };
	nngrpc_dispatch              *d;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    NNG_EEXIST);
	nngrpc_dispatch_seal(d);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    NNG_EBUSY);
	nngrpc_dispatch_free(d);
	nngrpc_dispatch_free(NULL);
}

static nngrpc_status
typed_echo(nngrpc_call *c, const Nngrpc__Testing__V1__EchoRequest *req,
    Nngrpc__Testing__V1__EchoResponse *resp)
{
	(void) c;
	resp->payload = req->payload;
	return (NNGRPC_OK);
}

static void
test_typed_glue_and_server_lifecycle(void **state)
{
	static const Nngrpc__Testing__V1__Testing_Impl impl
	    = { .echo = typed_echo };
	nngrpc_server_config cfg;
	nngrpc_server       *s;
	char                 err[256];

	(void) state;
	nngrpc_server_config_init(&cfg);
	assert_int_equal(
	    nngrpc_server_open(&cfg, &s), NNG_EINVAL); /* no URL */
	char url[64];
	snprintf(url, sizeof(url), "ipc:///tmp/nngrpc-unit-%d.sock",
	    (int) getpid());
	cfg.listen[0] = url;
	cfg.n_listen = 1;
	cfg.workers = 0;
	assert_int_equal(nngrpc_server_open(&cfg, &s), NNG_EINVAL);
	cfg.workers = 2;
	assert_int_equal(nngrpc_server_open(&cfg, &s), 0);
	assert_int_equal(
	    nngrpc__testing__v1__testing__register(s, &impl, NULL), 0);
	assert_int_equal(
	    nngrpc__testing__v1__testing__register(s, &impl, NULL),
	    NNG_EEXIST);
	assert_int_equal(nngrpc_server_start(s, err, sizeof(err)), 0);
	assert_int_equal(
	    nngrpc__testing__v1__testing__register(s, &impl, NULL), NNG_EBUSY);
	assert_int_equal(nngrpc_server_start(s, err, sizeof(err)), NNG_EBUSY);
	nngrpc_server_stop(s);
	nngrpc_server_stop(s); /* idempotent */
	nngrpc_server_close(s);
	nngrpc_server_close(NULL);
}

static void
test_listen_errors(void **state)
{
	static const struct {
		const char *url;
		const char *message_part;
	} cases[] = {
		{ "bogus://x", "unsupported transport" },
		{ "tcp://300.1.1.1:1", "" },
		{ "tcp://127.0.0.1:99999", "" },
	};
	nngrpc_server_config cfg;
	nngrpc_server       *s;
	char                 err[256];

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nngrpc_server_config_init(&cfg);
		cfg.listen[0] = cases[i].url;
		cfg.n_listen = 1;
		cfg.workers = 1;
		assert_int_equal(nngrpc_server_open(&cfg, &s), 0);
		err[0] = '\0';
		assert_int_not_equal(
		    nngrpc_server_start(s, err, sizeof(err)), 0);
		assert_non_null(strstr(err, cases[i].url));
		assert_non_null(strstr(err, cases[i].message_part));
		nngrpc_server_close(s);
	}
}

static void
test_port_in_use(void **state)
{
	nngrpc_server_config cfg;
	nngrpc_server       *s;
	struct sockaddr_in   sa = { .sin_family = AF_INET };
	socklen_t            len = sizeof(sa);
	char                 url[64];
	char                 err[256];
	int                  fd;

	(void) state;
	/* Hold a port with a plain socket, then ask the server for it. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ntohs(sa.sin_port));

	nngrpc_server_config_init(&cfg);
	cfg.listen[0] = url;
	cfg.n_listen = 1;
	cfg.workers = 1;
	assert_int_equal(nngrpc_server_open(&cfg, &s), 0);
	assert_int_equal(
	    nngrpc_server_start(s, err, sizeof(err)), NNG_EADDRINUSE);
	assert_non_null(strstr(err, "address already in use"));
	assert_non_null(strstr(err, url));
	nngrpc_server_close(s);
	close(fd);
}

/* Calls method with one metadata entry key: value (no entry when value is
 * NULL); returns the code. */
static int
call_with(
    nngrpc_dispatch *d, const char *method, const char *key, const char *value)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e
	    = NNGRPC__V1__REQUEST__METADATA_ENTRY__INIT;
	Nngrpc__V1__Request__MetadataEntry *ep = &e;
	uint8_t                             buf[512];
	nng_msg                            *reply;
	int                                 code;

	req.method = (char *) method;
	if (value != NULL) {
		e.key = (char *) key;
		e.value = (char *) value;
		req.metadata = &ep;
		req.n_metadata = 1;
	}
	size_t  n = nngrpc__v1__request__pack(&req, buf);
	int64_t now = nngrpc_now_ns();
	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, NULL, now, now, &reply),
	    0);
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	code = r->code;
	nngrpc__v1__response__free_unpacked(r, NULL);
	nng_msg_free(reply);
	return (code);
}

/* Calls Echo with an authorization value (NULL: none); returns the code. */
static int
echo_code(nngrpc_dispatch *d, const char *method, const char *auth)
{
	return (call_with(d, method, "authorization", auth));
}

/* A dispatch with the Testing service (Echo and Sleep plain, Fail
 * unimplemented), open or not, and an auth check of tokens. */
static nngrpc_dispatch *auth_dispatch(bool open, nngrpc_auth **authp,
    const char *const *tokens, size_t n_tokens);

static nngrpc_status
plain_echo(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) call;
	(void) in;
	(void) out;
	return (NNGRPC_OK);
}

static nngrpc_dispatch *
auth_dispatch(
    bool open, nngrpc_auth **authp, const char *const *tokens, size_t n_tokens)
{
	static const nngrpc_method_fn fns[4]
	    = { plain_echo, plain_echo, NULL };
	nngrpc_interceptor ic;
	nngrpc_dispatch   *d;

	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	if (open) {
		assert_int_equal(
		    nngrpc_dispatch_set_open(d, "nngrpc.testing.v1.Testing"),
		    0);
	}
	assert_int_equal(nngrpc_auth_alloc(authp), 0);
	assert_int_equal(nngrpc_auth_set_tokens(*authp, tokens, n_tokens), 0);
	nngrpc_auth_interceptor(*authp, &ic);
	assert_int_equal(nngrpc_dispatch_add_interceptor(d, &ic), 0);
	nngrpc_dispatch_seal(d);
	return (d);
}

static void
test_auth_token(void **state)
{
	static const char *const echo = "/nngrpc.testing.v1.Testing/Echo";
	static const char *const one[] = { "s3cret" };
	nngrpc_dispatch         *d;
	nngrpc_auth             *auth;

	(void) state;
	d = auth_dispatch(false, &auth, one, 1);
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_UNAUTHENTICATED);
	assert_int_equal(
	    echo_code(d, echo, "Bearer s3cre"), NNGRPC_UNAUTHENTICATED);
	assert_int_equal(
	    echo_code(d, echo, "Bearer s3cret!"), NNGRPC_UNAUTHENTICATED);
	assert_int_equal(echo_code(d, echo, "s3cret"), NNGRPC_UNAUTHENTICATED);
	assert_int_equal(echo_code(d, echo, "Bearer s3cret"), NNGRPC_OK);
	assert_int_equal(echo_code(d, echo, "bearer s3cret"), NNGRPC_OK);
	assert_int_equal(
	    echo_code(d, echo, "bearer S3cret"), NNGRPC_UNAUTHENTICATED);
	/* The method is looked up before the token is checked: a name says
	 * nothing a caller could not learn from reflection. */
	assert_int_equal(echo_code(d, "/x.Y/Z", NULL), NNGRPC_UNIMPLEMENTED);
	nngrpc_dispatch_free(d);
	nngrpc_auth_free(auth);

	/* An open service needs no token. */
	d = auth_dispatch(true, &auth, one, 1);
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_OK);
	assert_int_equal(nngrpc_dispatch_set_open(d, "no.Such"), NNG_ENOENT);
	nngrpc_dispatch_free(d);
	nngrpc_auth_free(auth);
}

/* Rotation: two tokens at once, then the old one dropped while the
 * registry is sealed and serving. */
static void
test_auth_accepts_two_tokens_while_rotating(void **state)
{
	static const char *const echo = "/nngrpc.testing.v1.Testing/Echo";
	static const char *const both[] = { "old-token", "new-token" };
	static const char *const new_only[] = { "new-token" };
	static const char *const three[] = { "a", "b", "c" };
	static const char *const empty[] = { "" };
	nngrpc_dispatch         *d;
	nngrpc_auth             *auth;

	(void) state;
	d = auth_dispatch(false, &auth, both, 2);
	assert_int_equal(echo_code(d, echo, "Bearer old-token"), NNGRPC_OK);
	assert_int_equal(echo_code(d, echo, "Bearer new-token"), NNGRPC_OK);
	assert_int_equal(echo_code(d, echo, "Bearer old-tokennew-token"),
	    NNGRPC_UNAUTHENTICATED);
	assert_int_equal(nngrpc_auth_set_tokens(auth, new_only, 1), 0);
	assert_int_equal(
	    echo_code(d, echo, "Bearer old-token"), NNGRPC_UNAUTHENTICATED);
	assert_int_equal(echo_code(d, echo, "Bearer new-token"), NNGRPC_OK);
	/* Refused lists leave the accepted tokens as they were. */
	assert_int_equal(nngrpc_auth_set_tokens(auth, three, 3), NNG_EINVAL);
	assert_int_equal(nngrpc_auth_set_tokens(auth, empty, 1), NNG_EINVAL);
	assert_int_equal(nngrpc_auth_set_tokens(auth, NULL, 0), NNG_EINVAL);
	assert_int_equal(echo_code(d, echo, "Bearer new-token"), NNGRPC_OK);
	nngrpc_dispatch_free(d);
	nngrpc_auth_free(auth);
	nngrpc_auth_free(NULL);
}

/* What an interceptor saw and did, for the tests below. */
typedef struct probe {
	const char   *name;
	nngrpc_status refuse; /* NNGRPC_OK: let the call through */
	char          log[256];
	char         *order; /* shared by every probe of a test */
	nngrpc_status seen_status;
	int64_t       seen_queue_us;
	int64_t       seen_run_us;
	int64_t       run_us_before;
	char          seen_trace[40]; /* "" for none */
	char          seen_method[64];
} probe;

static nngrpc_status
probe_before(nngrpc_call *call, void *arg)
{
	probe *p = arg;

	strcat(p->order, p->name);
	strcat(p->order, ">");
	p->run_us_before = nngrpc_call_run_us(call);
	if (p->refuse != NNGRPC_OK) {
		return (nngrpc_call_error(
		    call, p->refuse, "refused by %s", p->name));
	}
	return (NNGRPC_OK);
}

static void
probe_after(nngrpc_call *call, nngrpc_status status, void *arg)
{
	probe *p = arg;

	strcat(p->order, "<");
	strcat(p->order, p->name);
	p->seen_status = status;
	p->seen_queue_us = nngrpc_call_queue_us(call);
	p->seen_run_us = nngrpc_call_run_us(call);
	snprintf(p->seen_trace, sizeof(p->seen_trace), "%s",
	    nngrpc_call_trace_id(call) ? nngrpc_call_trace_id(call) : "");
	snprintf(p->seen_method, sizeof(p->seen_method), "%s",
	    nngrpc_call_method(call));
	snprintf(p->log, sizeof(p->log), "%s", nngrpc_call_message(call));
}

static nngrpc_dispatch *
probe_dispatch(probe *a, probe *b)
{
	static const nngrpc_method_fn fns[4]
	    = { plain_echo, plain_echo, NULL };
	nngrpc_interceptor ia = { "a", probe_before, probe_after, a };
	nngrpc_interceptor ib = { "b", probe_before, probe_after, b };
	nngrpc_interceptor none = { "none", NULL, NULL, NULL };
	nngrpc_dispatch   *d;

	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	assert_int_equal(nngrpc_dispatch_add_interceptor(d, &ia), 0);
	assert_int_equal(nngrpc_dispatch_add_interceptor(d, &ib), 0);
	assert_int_equal(
	    nngrpc_dispatch_add_interceptor(d, &none), NNG_EINVAL);
	nngrpc_dispatch_seal(d);
	assert_int_equal(nngrpc_dispatch_add_interceptor(d, &ia), NNG_EBUSY);
	return (d);
}

static void
test_interceptors_run_around_the_call(void **state)
{
	static const char *const echo = "/nngrpc.testing.v1.Testing/Echo";
	char                     order[128] = "";
	probe                    a = { .name = "a", .order = order };
	probe                    b = { .name = "b", .order = order };
	nngrpc_dispatch         *d = probe_dispatch(&a, &b);

	(void) state;
	/* before in order, after in reverse; after sees the outcome. */
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_OK);
	assert_string_equal(order, "a>b><b<a");
	assert_int_equal(a.seen_status, NNGRPC_OK);
	assert_string_equal(a.seen_method, echo);
	assert_int_equal(a.run_us_before, -1);
	assert_true(a.seen_run_us >= 0 && a.seen_queue_us >= 0);
	assert_string_equal(a.seen_trace, "");

	/* b refuses: the handler does not run, after hooks all do. */
	order[0] = '\0';
	b.refuse = NNGRPC_RESOURCE_EXHAUSTED;
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(order, "a>b><b<a");
	assert_string_equal(a.log, "refused by b");
	assert_int_equal(a.seen_status, NNGRPC_RESOURCE_EXHAUSTED);

	/* a refuses: b's before does not run. */
	order[0] = '\0';
	a.refuse = NNGRPC_PERMISSION_DENIED;
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_PERMISSION_DENIED);
	assert_string_equal(order, "a><b<a");

	/* An unknown method: no before, every after. */
	order[0] = '\0';
	assert_int_equal(echo_code(d, "/x.Y/Z", NULL), NNGRPC_UNIMPLEMENTED);
	assert_string_equal(order, "<b<a");
	assert_string_equal(a.seen_method, "/x.Y/Z");

	/* A status that is not one becomes UNKNOWN, naming the interceptor. */
	order[0] = '\0';
	a.refuse = (nngrpc_status) 77;
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_UNKNOWN);
	assert_non_null(strstr(a.log, "interceptor a returned status 77"));
	nngrpc_dispatch_free(d);
}

static void
test_trace_id_from_traceparent(void **state)
{
	static const char *const echo = "/nngrpc.testing.v1.Testing/Echo";
	static const struct {
		const char *traceparent;
		const char *trace_id; /* NULL: none */
	} cases[] = {
		{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		    "4bf92f3577b34da6a3ce929d0e0e4736" },
		/* A later version may carry more fields. */
		{ "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x",
		    "4bf92f3577b34da6a3ce929d0e0e4736" },
		{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		    NULL }, /* version 00 has exactly four fields */
		{ "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		    NULL },
		{ "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		    NULL },
		{ "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		    NULL },
		{ "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		    NULL }, /* upper case */
		{ "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		    NULL }, /* short */
		{ "", NULL },
	};
	char             order[1024] = "";
	probe            a = { .name = "a", .order = order };
	probe            b = { .name = "b", .order = order };
	nngrpc_dispatch *d = probe_dispatch(&a, &b);

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		order[0] = '\0';
		assert_int_equal(
		    call_with(d, echo, "traceparent", cases[i].traceparent),
		    NNGRPC_OK);
		assert_string_equal(a.seen_trace,
		    cases[i].trace_id != NULL ? cases[i].trace_id : "");
	}
	nngrpc_dispatch_free(d);
}

static void
test_serving_state(void **state)
{
	static const nngrpc_method_fn fns[4]
	    = { plain_echo, plain_echo, NULL };
	static const char *const echo = "/nngrpc.testing.v1.Testing/Echo";
	nngrpc_dispatch         *d;
	bool                     serving;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	assert_int_equal(nngrpc_dispatch_serving(d, "", &serving), 0);
	assert_true(serving);
	assert_int_equal(
	    nngrpc_dispatch_serving(d, "nngrpc.testing.v1.Testing", &serving),
	    0);
	assert_true(serving);
	assert_int_equal(
	    nngrpc_dispatch_serving(d, "no.Such", &serving), NNG_ENOENT);

	assert_int_equal(
	    nngrpc_dispatch_set_serving(d, "nngrpc.testing.v1.Testing", false),
	    0);
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_UNAVAILABLE);
	assert_int_equal(nngrpc_dispatch_serving(d, NULL, &serving), 0);
	assert_true(serving);
	assert_int_equal(
	    nngrpc_dispatch_set_serving(d, "nngrpc.testing.v1.Testing", true),
	    0);
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_OK);

	/* The whole server off: every service reports and answers so. */
	assert_int_equal(nngrpc_dispatch_set_serving(d, NULL, false), 0);
	assert_int_equal(
	    nngrpc_dispatch_serving(d, "nngrpc.testing.v1.Testing", &serving),
	    0);
	assert_false(serving);
	assert_int_equal(echo_code(d, echo, NULL), NNGRPC_UNAVAILABLE);
	assert_int_equal(
	    nngrpc_dispatch_set_serving(d, "no.Such", true), NNG_ENOENT);
	nngrpc_dispatch_free(d);
}

static void
test_reflection_lookup(void **state)
{
	static const nngrpc_method_fn fns[4] = { NULL, NULL, NULL };
	nngrpc_dispatch              *d;

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(
	    nngrpc_dispatch_add_service(d,
	        &nngrpc__testing__v1__testing__descriptor,
	        &nngrpc__testing__v1__testing__file_info, fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	assert_int_equal(nngrpc_dispatch_service_count(d), 1);
	assert_string_equal(
	    nngrpc_dispatch_service_name(d, 0), "nngrpc.testing.v1.Testing");
	assert_null(nngrpc_dispatch_service_name(d, 1));
	static const char *const found[]
	    = { "nngrpc.testing.v1.Testing", "nngrpc.testing.v1.Testing.Sleep",
		      "nngrpc.testing.v1.EchoRequest",
		      "nngrpc.testing.v1.FailResponse" };
	for (size_t i = 0; i < sizeof(found) / sizeof(found[0]); i++) {
		const nngrpc_file_info *f
		    = nngrpc_dispatch_find_symbol(d, found[i]);
		assert_non_null(f);
		assert_string_equal(
		    f->name, "nngrpc/testing/v1/testing.proto");
		assert_true(f->descriptor_set_len > 100);
	}
	assert_null(nngrpc_dispatch_find_symbol(d, "nngrpc.testing.v1"));
	assert_null(nngrpc_dispatch_find_symbol(d, "nope.Nope"));
	nngrpc_dispatch_free(d);
}

/* A call whose flag is set before it runs is answered CANCELLED, marked
 * not run, and its handler never runs; one cancelled while it runs sees
 * it in nngrpc_call_cancelled(); a call with no flag never is. */
static void
test_cancelled_call(void **state)
{
	static const nngrpc_method_fn fns[4] = { cancel_seen_fn, NULL };
	nngrpc_dispatch              *d;
	Nngrpc__V1__Response         *r;
	nng_msg                      *reply;
	uint8_t                      *buf;
	size_t                        n;
	int64_t                       now = nngrpc_now_ns();

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	n = make_request(
	    "/nngrpc.testing.v1.Testing/Echo", 1000000, NULL, 0, NULL, &buf);
	for (int round = 0; round < 3; round++) {
		handler_runs = 0;
		atomic_store(&cancel_flag, round == 0);
		assert_int_equal(
		    nngrpc_dispatch_call(d, buf, n, no_pipe,
		        round == 2 ? NULL : &cancel_flag, now, now, &reply),
		    0);
		r = nngrpc__v1__response__unpack(
		    NULL, nng_msg_len(reply), nng_msg_body(reply));
		nng_msg_free(reply);
		assert_non_null(r);
		if (round == 0) { /* cancelled while queued */
			assert_int_equal(r->code, NNGRPC_CANCELLED);
			assert_int_equal(handler_runs, 0);
			assert_non_null(strstr(r->message, "not run"));
			assert_int_equal(r->n_trailers, 1);
			assert_string_equal(
			    r->trailers[0]->key, "nngrpc-not-run");
		} else if (round == 1) { /* cancelled while running */
			assert_int_equal(r->code, NNGRPC_CANCELLED);
			assert_int_equal(handler_runs, 1);
			assert_int_equal(r->n_trailers, 0);
		} else { /* nothing can cancel it: the flag set is not its */
			assert_int_equal(r->code, NNGRPC_INTERNAL);
			assert_int_equal(handler_runs, 1);
		}
		nngrpc__v1__response__free_unpacked(r, NULL);
	}
	free(buf);
	nngrpc_dispatch_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_round_trip),
		cmocka_unit_test(test_cancelled_call),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_peek_inline),
		cmocka_unit_test(test_garbage_envelope),
		cmocka_unit_test(test_unprintable_method_name),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_out_of_memory_is_said),
		cmocka_unit_test(test_status_messages),
		cmocka_unit_test(test_binary_metadata),
		cmocka_unit_test(test_capability_trailers),
		cmocka_unit_test(test_compression),
		cmocka_unit_test(test_registration_errors),
		cmocka_unit_test(test_typed_glue_and_server_lifecycle),
		cmocka_unit_test(test_listen_errors),
		cmocka_unit_test(test_port_in_use),
		cmocka_unit_test(test_auth_token),
		cmocka_unit_test(test_auth_accepts_two_tokens_while_rotating),
		cmocka_unit_test(test_interceptors_run_around_the_call),
		cmocka_unit_test(test_trace_id_from_traceparent),
		cmocka_unit_test(test_serving_state),
		cmocka_unit_test(test_reflection_lookup),
	};
	return (cmocka_run_group_tests_name("dispatch", tests, NULL, NULL));
}
