/* Regression (found by tests/fuzz/fuzz_dispatch): a status message cut in
 * the middle of a UTF-8 sequence. Response.message is a proto3 string, and
 * proto3 parsers reject a message whose strings are not valid UTF-8:
 * Python's raises DecodeError for the whole Response, so the client never
 * sees the status. Two places cut:
 *  - nngrpc_call_error() formats into 512 bytes, so a long non-ASCII
 *    message (Testing/Fail echoes the caller's) loses the second half of a
 *    character at byte 511;
 *  - the built-in Health/Check (and Reflection) echo the caller's name
 *    with "%.200s", which cuts at byte 200, whatever is there.
 * Crash inputs: tests/fuzz/regressions/fuzz_dispatch/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <nngrpc/clock.h>

#include "dispatch.h"
#include "nngrpc/health/v1/health.pb-c.h"
#include "nngrpc/testing/v1/testing.pb-c.h"
#include "nngrpc/v1/rpc.pb-c.h"

/* Strict UTF-8 (RFC 3629). */
static bool
utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *) str;

	while (*s != '\0') {
		uint32_t cp;
		int      n;

		if (s[0] < 0x80) {
			s++;
			continue;
		} else if ((s[0] & 0xE0) == 0xC0) {
			cp = s[0] & 0x1F;
			n = 1;
		} else if ((s[0] & 0xF0) == 0xE0) {
			cp = s[0] & 0x0F;
			n = 2;
		} else if ((s[0] & 0xF8) == 0xF0) {
			cp = s[0] & 0x07;
			n = 3;
		} else {
			return (false);
		}
		for (int i = 1; i <= n; i++) {
			if ((s[i] & 0xC0) != 0x80) {
				return (false);
			}
			cp = (cp << 6) | (s[i] & 0x3F);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800)
		    || (n == 3 && cp < 0x10000) || cp > 0x10FFFF
		    || (cp >= 0xD800 && cp <= 0xDFFF)) {
			return (false);
		}
		s += n + 1;
	}
	return (true);
}

/* "é" (2 bytes) n times, NUL-terminated; the caller frees it. */
static char *
accents(size_t n)
{
	char *s = malloc(2 * n + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = (char) 0xC3;
		s[2 * i + 1] = (char) 0xA9;
	}
	s[2 * n] = '\0';
	return (s);
}

/* As Testing/Fail: answers with the caller's message (here, in Echo's
 * slot, the request's payload bytes as the message). */
static nngrpc_status
fail_with_payload(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	const Nngrpc__Testing__V1__EchoRequest *req = (const void *) in;
	char *msg = nngrpc_call_alloc(call, req->payload.len + 1);

	(void) out;
	memcpy(msg, req->payload.data, req->payload.len);
	msg[req->payload.len] = '\0';
	return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT, "%s", msg));
}

static void
test_call_error_keeps_utf8(void **state)
{
	static const nngrpc_method_fn fns[4]
	    = { fail_with_payload, NULL, NULL };
	static const nng_pipe            no_pipe = NNG_PIPE_INITIALIZER;
	Nngrpc__V1__Request              req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__Testing__V1__EchoRequest echo
	    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
	nngrpc_dispatch *d;
	uint8_t          payload[1024], env[1200];
	char            *msg = accents(400); /* 800 bytes: cut at 511 */
	nng_msg         *reply;
	int64_t          now = nngrpc_now_ns();

	(void) state;
	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	nngrpc_dispatch_seal(d);
	echo.payload.data = (uint8_t *) msg;
	echo.payload.len = strlen(msg);
	req.method = "/nngrpc.testing.v1.Testing/Echo";
	req.payload.data = payload;
	req.payload.len
	    = nngrpc__testing__v1__echo_request__pack(&echo, payload);
	size_t n = nngrpc__v1__request__pack(&req, env);

	assert_int_equal(
	    nngrpc_dispatch_call(d, env, n, no_pipe, NULL, now, now, &reply),
	    0);
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	assert_non_null(r);
	assert_int_equal(r->code, NNGRPC_INVALID_ARGUMENT);
	assert_true(strlen(r->message) > 0);
	assert_true(utf8_valid(r->message));
	nngrpc__v1__response__free_unpacked(r, NULL);
	nng_msg_free(reply);
	nngrpc_dispatch_free(d);
	free(msg);
}

/* Health/Check for a service name of 1 + 150 "é": "%.200s" cuts the 100th
 * "é" in two. Through a real server, which registers the built-ins. */
static void
test_health_check_keeps_utf8(void **state)
{
	Nngrpc__V1__Request                    req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__Health__V1__HealthCheckRequest hc
	    = NNGRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	nngrpc_server_config cfg;
	nngrpc_server       *s;
	nng_socket           sock;
	char                 url[64], err[256];
	char                *acc = accents(150);
	char                *name = malloc(strlen(acc) + 2);
	uint8_t              payload[512], env[600];
	nng_msg             *msg;

	(void) state;
	name[0] = 'x';
	strcpy(name + 1, acc);
	snprintf(url, sizeof(url), "ipc:///tmp/nngrpc-regress-utf8-%d.sock",
	    (int) getpid());
	nngrpc_server_config_init(&cfg);
	cfg.listen[0] = url;
	cfg.n_listen = 1;
	cfg.workers = 1;
	assert_int_equal(nngrpc_server_open(&cfg, &s), 0);
	assert_int_equal(nngrpc_server_start(s, err, sizeof(err)), 0);

	hc.service = name;
	req.method = "/nngrpc.health.v1.Health/Check";
	req.payload.data = payload;
	req.payload.len
	    = nngrpc__health__v1__health_check_request__pack(&hc, payload);
	size_t n = nngrpc__v1__request__pack(&req, env);

	assert_int_equal(nng_req0_open(&sock), 0);
	assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000), 0);
	assert_int_equal(nng_dial(sock, url, NULL, 0), 0);
	assert_int_equal(nng_send(sock, env, n, 0), 0);
	assert_int_equal(nng_recvmsg(sock, &msg, 0), 0);
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(msg), nng_msg_body(msg));
	assert_non_null(r);
	assert_int_equal(r->code, NNGRPC_NOT_FOUND);
	assert_true(utf8_valid(r->message));
	nngrpc__v1__response__free_unpacked(r, NULL);
	nng_msg_free(msg);
	nng_close(sock);
	nngrpc_server_close(s);
	free(name);
	free(acc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_call_error_keeps_utf8),
		cmocka_unit_test(test_health_check_keeps_utf8),
	};
	return (cmocka_run_group_tests_name(
	    "regress_utf8_status_message", tests, NULL, NULL));
}
