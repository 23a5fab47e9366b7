/* Process isolation's front end with real processes, without NNG: a
 * registry whose runner is the pool (isolate.c), a zygote and workers
 * forked from this test (zygote.c), and calls through nngrpc_dispatch_call()
 * from several threads at once. Built plain, with ASan and with TSan (the
 * pool's locks and its supervisor thread). Handlers, over the Testing
 * service's descriptor: Echo answers with the generation the process has,
 * Sleep is a reload that bumps it, Fail aborts (a crash), Crash spins (a
 * hang) until it is cancelled, or to the end with metadata "deaf". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "dispatch.h"
#include "isolate.h"
#include "nngrpc/testing/v1/testing.nngrpc.h"
#include "nngrpc/v1/rpc.pb-c.h"

#define THREADS 4
#define CALLS   100

static const nng_pipe no_pipe = NNG_PIPE_INITIALIZER;
/* The dataset's generation: set by load, bumped by a reload, in the
 * zygote; workers inherit it. */
static char generation[16] = "none";

static nngrpc_status
echo_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	Nngrpc__Testing__V1__EchoResponse *resp = (void *) out;

	(void) call;
	(void) in;
	resp->payload.data = (uint8_t *) generation;
	resp->payload.len = strlen(generation);
	return (NNGRPC_OK);
}

static nngrpc_status
reload_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) call;
	(void) in;
	(void) out;
	snprintf(
	    generation, sizeof(generation), "gen%d", atoi(generation + 3) + 1);
	return (NNGRPC_OK);
}

static nngrpc_status
abort_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	(void) call;
	(void) in;
	(void) out;
	abort();
}

static nngrpc_status
spin_fn(nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	int64_t until = nngrpc_now_ns() + 30LL * 1000000000;
	bool    deaf = nngrpc_call_metadata(call, "deaf") != NULL;

	(void) in;
	(void) out;
	while (nngrpc_now_ns() < until) {
		if (!deaf && nngrpc_call_cancelled(call)) {
			return (nngrpc_call_error(
			    call, NNGRPC_CANCELLED, "spin: cancelled"));
		}
	}
	return (NNGRPC_OK);
}

static int
load(void *arg, char *err, size_t errlen)
{
	(void) arg;
	(void) err;
	(void) errlen;
	snprintf(generation, sizeof(generation), "gen1");
	return (0);
}

static int
load_fails(void *arg, char *err, size_t errlen)
{
	(void) arg;
	snprintf(err, errlen, "no data here");
	return (2);
}

static nngrpc_dispatch *d;

/* One call; returns the response (freed by the caller). */
static Nngrpc__V1__Response *
call(const char *method, uint64_t timeout_us)
{
	Nngrpc__V1__Request   req = NNGRPC__V1__REQUEST__INIT;
	uint8_t               buf[256];
	size_t                n;
	nng_msg              *reply;
	int64_t               now = nngrpc_now_ns();
	Nngrpc__V1__Response *r;

	req.method = (char *) method;
	req.timeout_us = timeout_us;
	n = nngrpc__v1__request__pack(&req, buf);
	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, NULL, now, now, &reply),
	    0);
	r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	nng_msg_free(reply);
	assert_non_null(r);
	return (r);
}

/* Sets the flag arg points to after 30 ms: a client giving up. */
static void *
cancel_soon(void *arg)
{
	struct timespec ts = { 0, 30 * 1000000 };

	nanosleep(&ts, NULL);
	atomic_store((atomic_bool *) arg, true);
	return (NULL);
}

/* A Crash (a spin) cancelled 30 ms in, from another thread; deaf: the
 * handler does not look. Returns the response (freed by the caller) and
 * how long the call took in *msp. */
static Nngrpc__V1__Response *
call_cancelled(bool deaf, int64_t *msp)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e
	    = NNGRPC__V1__REQUEST__METADATA_ENTRY__INIT;
	Nngrpc__V1__Request__MetadataEntry *ep = &e;
	atomic_bool                         flag = false;
	uint8_t                             buf[256];
	pthread_t                           t;
	nng_msg                            *reply;
	int64_t                             now = nngrpc_now_ns();
	Nngrpc__V1__Response               *r;
	size_t                              n;

	req.method = "/nngrpc.testing.v1.Testing/Crash";
	req.timeout_us = 10000000;
	if (deaf) {
		e.key = "deaf";
		e.value = "1";
		req.metadata = &ep;
		req.n_metadata = 1;
	}
	n = nngrpc__v1__request__pack(&req, buf);
	assert_int_equal(pthread_create(&t, NULL, cancel_soon, &flag), 0);
	assert_int_equal(
	    nngrpc_dispatch_call(d, buf, n, no_pipe, &flag, now, now, &reply),
	    0);
	*msp = (nngrpc_now_ns() - now) / 1000000;
	pthread_join(t, NULL);
	r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	nng_msg_free(reply);
	assert_non_null(r);
	return (r);
}

/* The generation an Echo reports. */
static void
expect_echo(const char *want)
{
	Nngrpc__V1__Response              *r;
	Nngrpc__Testing__V1__EchoResponse *e;

	r = call("/nngrpc.testing.v1.Testing/Echo", 10000000);
	assert_int_equal(r->code, NNGRPC_OK);
	e = nngrpc__testing__v1__echo_response__unpack(
	    NULL, r->payload.len, r->payload.data);
	assert_non_null(e);
	assert_int_equal(e->payload.len, strlen(want));
	assert_memory_equal(e->payload.data, want, strlen(want));
	nngrpc__testing__v1__echo_response__free_unpacked(e, NULL);
	nngrpc__v1__response__free_unpacked(r, NULL);
}

static void *
echo_many(void *arg)
{
	(void) arg;
	for (int i = 0; i < CALLS; i++) {
		expect_echo("gen1");
	}
	return (NULL);
}

static nngrpc_isolate *
open_pool(int (*loader)(void *, char *, size_t))
{
	static const nngrpc_method_fn fns[4]
	    = { echo_fn, reload_fn, abort_fn, spin_fn };
	nngrpc_isolate_config cfg = {
		.workers = THREADS,
		.grace_ns = 20 * 1000000,
		.poison_crashes = 2,
		.poison_window_ns = 60LL * 1000000000,
	};
	nngrpc_isolate *iso;

	assert_int_equal(nngrpc_dispatch_alloc(&d), 0);
	assert_int_equal(nngrpc_dispatch_add_service(d,
	                     &nngrpc__testing__v1__testing__descriptor, NULL,
	                     fns, NULL, 0, NULL),
	    0);
	assert_int_equal(
	    nngrpc_dispatch_set_reload(d, "/nngrpc.testing.v1.Testing/Sleep"),
	    0);
	assert_int_equal(nngrpc_isolate_alloc(&cfg, &iso), 0);
	nngrpc_dispatch_set_runner(d, nngrpc_isolate_runner, iso);
	assert_int_equal(nngrpc_isolate_fork(iso, d, NULL, loader, NULL), 0);
	nngrpc_dispatch_seal(d);
	return (iso);
}

static void
test_calls_crashes_hangs_and_reload(void **state)
{
	nngrpc_isolate       *iso = open_pool(load);
	pthread_t             t[THREADS];
	char                  err[128] = "";
	Nngrpc__V1__Response *r;

	(void) state;
	assert_int_equal(nngrpc_isolate_load(iso, err, sizeof(err)), 0);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(
		    pthread_create(&t[i], NULL, echo_many, NULL), 0);
	}
	/* A crash among the calls fails only itself. */
	r = call("/nngrpc.testing.v1.Testing/Fail", 0);
	assert_int_equal(r->code, NNGRPC_INTERNAL);
	assert_non_null(strstr(r->message, "crashed: SIGABRT running"));
	nngrpc__v1__response__free_unpacked(r, NULL);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
	}
	/* A hang past 10 ms + 20 ms grace is killed. */
	r = call("/nngrpc.testing.v1.Testing/Crash", 10000);
	assert_int_equal(r->code, NNGRPC_DEADLINE_EXCEEDED);
	assert_non_null(strstr(r->message, "past its deadline"));
	nngrpc__v1__response__free_unpacked(r, NULL);
	/* A cancel reaches the worker process (ISO_CANCEL), where the
	 * handler sees it; a worker whose handler does not look is killed
	 * the grace (20 ms) after the cancel. Either way: CANCELLED, long
	 * before the 10 s deadline, and the pool serves on. */
	for (int deaf = 0; deaf < 2; deaf++) {
		int64_t ms;
		r = call_cancelled(deaf, &ms);
		assert_int_equal(r->code, NNGRPC_CANCELLED);
		assert_non_null(strstr(r->message,
		    deaf ? "did not stop within" : "spin: cancelled"));
		assert_true(ms >= 30 && ms < 5000);
		nngrpc__v1__response__free_unpacked(r, NULL);
		expect_echo("gen1");
	}
	/* The second crash of the same request makes it a poison pill. */
	r = call("/nngrpc.testing.v1.Testing/Fail", 0);
	assert_int_equal(r->code, NNGRPC_INTERNAL);
	nngrpc__v1__response__free_unpacked(r, NULL);
	r = call("/nngrpc.testing.v1.Testing/Fail", 0);
	assert_int_equal(r->code, NNGRPC_INTERNAL);
	assert_non_null(strstr(r->message, "poison-pill guard"));
	nngrpc__v1__response__free_unpacked(r, NULL);
	/* A reload runs in the zygote; every call after it sees the new
	 * generation, in this process nothing changed. */
	expect_echo("gen1");
	r = call("/nngrpc.testing.v1.Testing/Sleep", 0);
	assert_int_equal(r->code, NNGRPC_OK);
	nngrpc__v1__response__free_unpacked(r, NULL);
	for (int i = 0; i < 3 * THREADS; i++) {
		expect_echo("gen2");
	}
	assert_string_equal(generation, "none");
	nngrpc_isolate_free(iso);
	nngrpc_dispatch_free(d);
}

static void
test_a_failed_load_is_reported(void **state)
{
	nngrpc_isolate *iso = open_pool(load_fails);
	char            err[128] = "";

	(void) state;
	assert_int_equal(nngrpc_isolate_load(iso, err, sizeof(err)), 2);
	assert_string_equal(err, "no data here");
	nngrpc_isolate_free(iso);
	nngrpc_dispatch_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		/* First, while this process has one thread. */
		cmocka_unit_test(test_a_failed_load_is_reported),
		cmocka_unit_test(test_calls_crashes_hangs_and_reload),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
