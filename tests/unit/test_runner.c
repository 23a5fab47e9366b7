/* The seam of process isolation in dispatch: a runner takes admitted calls
 * in place of the handler, and nngrpc_dispatch_invoke() is its other end
 * (what a worker process or --replay runs). Here the runner calls invoke
 * on a second registry in the same process, as a worker does over its
 * socket, and hands back the status, message, trailers and payload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <nngrpc/clock.h>

#include "call.h"
#include "dispatch.h"
#include "nngrpc/testing/v1/testing.nngrpc.h"
#include "nngrpc/v1/rpc.pb-c.h"

static const nng_pipe no_pipe = NNG_PIPE_INITIALIZER;
static int            runner_calls;
static bool           runner_saw_reload;

static nngrpc_status
echo_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	const Nngrpc__Testing__V1__EchoRequest *req = (const void *) in;
	Nngrpc__Testing__V1__EchoResponse      *resp = (void *) out;

	assert_int_equal(nngrpc_call_set_trailer(call, "ran", "worker"), 0);
	resp->payload = req->payload;
	return (NNGRPC_OK);
}

static nngrpc_status
fail_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) in;
	(void) out;
	return (nngrpc_call_error(call, NNGRPC_NOT_FOUND, "nothing here"));
}

static nngrpc_dispatch *
make_dispatch(void)
{
	static const nngrpc_method_fn fns[8] = { echo_fn, NULL, fail_fn };
	nngrpc_dispatch              *d;

	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	return (d);
}

/* The "worker": a registry of its own, reached only through invoke. */
static nngrpc_dispatch *worker;

static nngrpc_status
runner(void *arg, nngrpc_call *call, uint32_t method, bool reload,
    const uint8_t *body, size_t len, ProtobufCBinaryData *payload)
{
	uint8_t               tmp[16];
	ProtobufCBufferSimple out = PROTOBUF_C_BUFFER_SIMPLE_INIT(tmp);
	nngrpc_call           wc;
	nngrpc_status         st;

	assert_ptr_equal(arg, &runner_calls);
	runner_calls++;
	runner_saw_reload = reload;
	nngrpc_call_init(&wc);
	st = nngrpc_dispatch_invoke(
	    worker, &wc, method, body, len, nngrpc_now_ns(), &out.base);
	for (size_t i = 0; i < wc.c_n_trailers; i++) {
		assert_int_equal(
		    nngrpc_call_set_trailer(
		        call, wc.c_trailers[i]->key, wc.c_trailers[i]->value),
		    0);
	}
	if (wc.c_message != NULL) {
		nngrpc_call_error(call, st, "%s", wc.c_message);
	}
	if (st == NNGRPC_OK) {
		payload->data = nngrpc_call_alloc(call, out.len);
		memcpy(payload->data, out.data, out.len);
		payload->len = out.len;
	}
	PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&out);
	nngrpc_call_fini(&wc);
	return (st);
}

static size_t
make_request(const char *method, const char *payload, uint8_t **bufp)
{
	Nngrpc__V1__Request              req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__Testing__V1__EchoRequest in
	    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
	uint8_t inbuf[256];

	in.payload.data = (uint8_t *) payload;
	in.payload.len = strlen(payload);
	req.method = (char *) method;
	req.payload.data = inbuf;
	req.payload.len = nngrpc__testing__v1__echo_request__pack(&in, inbuf);
	*bufp = malloc(nngrpc__v1__request__get_packed_size(&req));
	return (nngrpc__v1__request__pack(&req, *bufp));
}

static Nngrpc__V1__Response *
call(nngrpc_dispatch *d, const char *method, const char *payload)
{
	uint8_t              *buf;
	size_t                n = make_request(method, payload, &buf);
	int64_t               now = nngrpc_now_ns();
	nng_msg              *reply;
	Nngrpc__V1__Response *r;

	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, NULL, now, now, &reply),
	    0);
	r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_non_null(r);
	nng_msg_free(reply);
	free(buf);
	return (r);
}

static void
test_runner_takes_calls_and_invoke_runs_them(void **state)
{
	nngrpc_dispatch                   *d = make_dispatch();
	Nngrpc__V1__Response              *r;
	Nngrpc__Testing__V1__EchoResponse *out;

	(void) state;
	worker = make_dispatch();
	nngrpc_dispatch_set_runner(d, runner, &runner_calls);
	assert_int_equal(
	    nngrpc_dispatch_set_reload(d, "/nngrpc.testing.v1.Testing/Fail"),
	    0);
	assert_int_equal(
	    nngrpc_dispatch_set_reload(d, "/nngrpc.testing.v1.Testing/No"),
	    NNG_ENOENT);
	nngrpc_dispatch_seal(d);
	runner_calls = 0;

	r = call(d, "/nngrpc.testing.v1.Testing/Echo", "hello");
	assert_int_equal(r->code, NNGRPC_OK);
	assert_int_equal(runner_calls, 1);
	assert_false(runner_saw_reload);
	assert_int_equal(r->n_trailers, 1);
	assert_string_equal(r->trailers[0]->value, "worker");
	out = nngrpc__testing__v1__echo_response__unpack(
	    NULL, r->payload.len, r->payload.data);
	assert_non_null(out);
	assert_memory_equal(out->payload.data, "hello", 5);
	nngrpc__testing__v1__echo_response__free_unpacked(out, NULL);
	nngrpc__v1__response__free_unpacked(r, NULL);

	/* The message of a failure comes back; Fail is marked reload. */
	r = call(d, "/nngrpc.testing.v1.Testing/Fail", "");
	assert_int_equal(r->code, NNGRPC_NOT_FOUND);
	assert_string_equal(r->message, "nothing here");
	assert_true(runner_saw_reload);
	assert_int_equal(runner_calls, 2);
	nngrpc__v1__response__free_unpacked(r, NULL);

	/* Unknown methods never reach the runner. */
	r = call(d, "/nngrpc.testing.v1.Testing/Nope", "");
	assert_int_equal(r->code, NNGRPC_UNIMPLEMENTED);
	assert_int_equal(runner_calls, 2);
	nngrpc__v1__response__free_unpacked(r, NULL);

	nngrpc_dispatch_free(worker);
	nngrpc_dispatch_free(d);
}

static void
test_invoke_errors(void **state)
{
	uint8_t               tmp[16];
	ProtobufCBufferSimple out = PROTOBUF_C_BUFFER_SIMPLE_INIT(tmp);
	nngrpc_dispatch      *d = make_dispatch();
	nngrpc_call           c;
	uint8_t              *buf;
	size_t                n;

	(void) state;
	nngrpc_dispatch_seal(d);
	/* Not an envelope. */
	nngrpc_call_init(&c);
	assert_int_equal(
	    nngrpc_dispatch_invoke(d, &c, NNGRPC_DISPATCH_ANY_METHOD,
	        (const uint8_t *) "\xff\xff", 2, 0, &out.base),
	    NNGRPC_INTERNAL);
	nngrpc_call_fini(&c);
	/* An index that is not the envelope's method, one out of range, a
	 * method with no handler. */
	n = make_request("/nngrpc.testing.v1.Testing/Echo", "x", &buf);
	for (uint32_t idx = 2; idx < 100; idx += 97) {
		nngrpc_call_init(&c);
		assert_int_equal(nngrpc_dispatch_invoke(d, &c, idx, buf, n,
		                     nngrpc_now_ns(), &out.base),
		    NNGRPC_UNIMPLEMENTED);
		assert_non_null(strstr(c.c_message, "not served here"));
		nngrpc_call_fini(&c);
	}
	free(buf);
	n = make_request("/nngrpc.testing.v1.Testing/Sleep", "", &buf);
	nngrpc_call_init(&c);
	assert_int_equal(
	    nngrpc_dispatch_invoke(d, &c, NNGRPC_DISPATCH_ANY_METHOD, buf, n,
	        nngrpc_now_ns(), &out.base),
	    NNGRPC_UNIMPLEMENTED);
	nngrpc_call_fini(&c);
	free(buf);
	assert_int_equal(out.len, 0);
	PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&out);
	nngrpc_dispatch_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_runner_takes_calls_and_invoke_runs_them),
		cmocka_unit_test(test_invoke_errors),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
