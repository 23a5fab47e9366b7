/* Cancellation through a real server and real NNG connections
 * (docs/compatibility.md, "Cancellation"): a cancel request by request id
 * on the call's own connection, and every way it finds nothing to do: an
 * unknown request id, a cancel from another connection, a cancel after the
 * reply, a cancel that names no id, an id too long to be cancelled by;
 * then a cancelled queued call (never run) and a closed connection. The
 * server has one worker and no CoDel admission, so a second call waits in
 * the queue for as long as the first runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <nngrpc/clock.h>
#include <nngrpc/nngrpc.h>

#include "nngrpc/testing/v1/testing.nngrpc.h"
#include "nngrpc/v1/rpc.pb-c.h"

#define SLEEP  "/nngrpc.testing.v1.Testing/Sleep"
#define ECHO   "/nngrpc.testing.v1.Testing/Echo"
#define CANCEL "/nngrpc.v1.Control/Cancel"

static atomic_int sleeps_started, sleeps_cancelled, echoes;

/* Sleeps req->ms, looking for a cancel every millisecond. */
static nngrpc_status
sleep_fn(nngrpc_call *call, const Nngrpc__Testing__V1__SleepRequest *req,
    Nngrpc__Testing__V1__SleepResponse *resp)
{
	int64_t         until = nngrpc_now_ns() + (int64_t) req->ms * 1000000;
	struct timespec ms = { 0, 1000000 };

	(void) resp;
	atomic_fetch_add(&sleeps_started, 1);
	while (nngrpc_now_ns() < until) {
		if (nngrpc_call_cancelled(call)) {
			atomic_fetch_add(&sleeps_cancelled, 1);
			return (nngrpc_call_error(
			    call, NNGRPC_CANCELLED, "sleep: cancelled"));
		}
		nanosleep(&ms, NULL);
	}
	return (NNGRPC_OK);
}

static nngrpc_status
echo_fn(nngrpc_call *call, const Nngrpc__Testing__V1__EchoRequest *req,
    Nngrpc__Testing__V1__EchoResponse *resp)
{
	(void) call;
	atomic_fetch_add(&echoes, 1);
	resp->payload = req->payload;
	return (NNGRPC_OK);
}

typedef struct fixture {
	nngrpc_server *server;
	char           url[64];
	nng_socket     conn[2]; /* two client connections */
} fixture;

/* One call in flight on its own context of a connection. */
typedef struct pending {
	nng_ctx     ctx;
	nng_aio    *aio;
	atomic_bool done; /* the receive ended (libnng 1.5 has no aio_busy) */
} pending;

static void
received(void *arg)
{
	atomic_store(&((pending *) arg)->done, true);
}

static int
setup(void **state)
{
	static const Nngrpc__Testing__V1__Testing_Impl impl
	    = { .sleep = sleep_fn, .echo = echo_fn };
	fixture             *f = calloc(1, sizeof(*f));
	nngrpc_server_config cfg;
	char                 err[256];

	assert_non_null(f);
	snprintf(f->url, sizeof(f->url), "ipc:///tmp/nngrpc-cancel-%d.sock",
	    (int) getpid());
	nngrpc_server_config_init(&cfg);
	cfg.listen[0] = f->url;
	cfg.n_listen = 1;
	cfg.workers = 1;
	cfg.queue = 4;
	assert_int_equal(nngrpc_server_open(&cfg, &f->server), 0);
	assert_int_equal(
	    nngrpc_server_set_int(f->server, NNGRPC_OPT_QUEUE_TARGET_MS, 0),
	    0);
	assert_int_equal(
	    nngrpc__testing__v1__testing__register(f->server, &impl, NULL), 0);
	assert_int_equal(nngrpc_server_start(f->server, err, sizeof(err)), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(nng_req0_open(&f->conn[i]), 0);
		assert_int_equal(nng_dial(f->conn[i], f->url, NULL, 0), 0);
	}
	atomic_store(&sleeps_started, 0);
	atomic_store(&sleeps_cancelled, 0);
	atomic_store(&echoes, 0);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fixture *f = *state;

	for (int i = 0; i < 2; i++) {
		nng_close(f->conn[i]); /* a second close is NNG_ECLOSED */
	}
	nngrpc_server_close(f->server);
	free(f);
	return (0);
}

/* Sends a request on a new context of conn: method, request id (NULL:
 * none), the id to cancel (NULL: none), payload. */
static pending *
start(nng_socket conn, const char *method, const char *rid, const char *cancel,
    const uint8_t *payload, size_t len)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e[2], *ep[2] = { &e[0], &e[1] };
	pending                           *p = calloc(1, sizeof(*p));
	nng_msg                           *msg;
	size_t                             n;

	req.method = (char *) method;
	req.timeout_us = 10 * 1000000;
	req.payload.data = (uint8_t *) payload;
	req.payload.len = len;
	req.metadata = ep;
	for (int i = 0; i < 2; i++) {
		nngrpc__v1__request__metadata_entry__init(&e[i]);
	}
	if (rid != NULL) {
		e[req.n_metadata].key = "nngrpc-request-id";
		e[req.n_metadata++].value = (char *) rid;
	}
	if (cancel != NULL) {
		e[req.n_metadata].key = "nngrpc-cancel";
		e[req.n_metadata++].value = (char *) cancel;
	}
	n = nngrpc__v1__request__get_packed_size(&req);
	assert_int_equal(nng_msg_alloc(&msg, n), 0);
	nngrpc__v1__request__pack(&req, nng_msg_body(msg));
	assert_non_null(p);
	assert_int_equal(nng_ctx_open(&p->ctx, conn), 0);
	assert_int_equal(nng_aio_alloc(&p->aio, NULL, NULL), 0);
	nng_aio_set_msg(p->aio, msg);
	nng_ctx_send(p->ctx, p->aio);
	nng_aio_wait(p->aio);
	assert_int_equal(nng_aio_result(p->aio), 0);
	nng_aio_free(p->aio);
	assert_int_equal(nng_aio_alloc(&p->aio, received, p), 0);
	nng_aio_set_timeout(p->aio, 5000);
	nng_ctx_recv(p->ctx, p->aio);
	return (p);
}

/* Waits for p's reply; returns it (freed by the caller), and frees p. */
static Nngrpc__V1__Response *
finish(pending *p)
{
	Nngrpc__V1__Response *r;
	nng_msg              *msg;

	nng_aio_wait(p->aio);
	assert_int_equal(nng_aio_result(p->aio), 0);
	msg = nng_aio_get_msg(p->aio);
	r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(msg), nng_msg_body(msg));
	assert_non_null(r);
	nng_msg_free(msg);
	nng_aio_free(p->aio);
	nng_ctx_close(p->ctx);
	free(p);
	return (r);
}

/* A Sleep of ms on conn, with request id rid, once it runs. */
static pending *
start_sleep(nng_socket conn, const char *rid, uint32_t ms)
{
	Nngrpc__Testing__V1__SleepRequest in
	    = NNGRPC__TESTING__V1__SLEEP_REQUEST__INIT;
	uint8_t  buf[16];
	int      before = atomic_load(&sleeps_started);
	int64_t  until = nngrpc_now_ns() + 5LL * 1000000000;
	pending *p;

	in.ms = ms;
	p = start(conn, SLEEP, rid, NULL, buf,
	    nngrpc__testing__v1__sleep_request__pack(&in, buf));
	while (atomic_load(&sleeps_started) == before) {
		assert_true(nngrpc_now_ns() < until);
		usleep(1000);
	}
	return (p);
}

/* A cancel of rid on conn; returns its status code. */
static int
cancel(nng_socket conn, const char *rid)
{
	pending              *p = start(conn, CANCEL, NULL, rid, NULL, 0);
	Nngrpc__V1__Response *r = finish(p);
	int                   code = r->code;

	nngrpc__v1__response__free_unpacked(r, NULL);
	return (code);
}

/* True while p's call has no reply, 50 ms on. */
static bool
still_running(pending *p)
{
	usleep(50 * 1000);
	return (!atomic_load(&p->done));
}

static void
expect_cancelled(pending *p, const char *part, bool not_run)
{
	Nngrpc__V1__Response *r = finish(p);

	assert_int_equal(r->code, NNGRPC_CANCELLED);
	assert_non_null(strstr(r->message, part));
	assert_int_equal(r->n_trailers, not_run ? 1 : 0);
	if (not_run) {
		assert_string_equal(r->trailers[0]->key, "nngrpc-not-run");
	}
	nngrpc__v1__response__free_unpacked(r, NULL);
}

/* A running call is cancelled by its id on its own connection only. */
static void
test_cancel_by_request_id(void **state)
{
	fixture *f = *state;
	pending *a = start_sleep(f->conn[0], "a", 5000);
	int64_t  t0;

	assert_int_equal(cancel(f->conn[0], "nope"), NNGRPC_OK); /* unknown */
	assert_true(still_running(a));
	/* Another connection cannot cancel it. */
	assert_int_equal(cancel(f->conn[1], "a"), NNGRPC_OK);
	assert_true(still_running(a));
	assert_int_equal(atomic_load(&sleeps_cancelled), 0);
	t0 = nngrpc_now_ns();
	assert_int_equal(cancel(f->conn[0], "a"), NNGRPC_OK);
	expect_cancelled(a, "sleep: cancelled", false);
	assert_true(nngrpc_now_ns() - t0 < 1000000000LL);
	assert_int_equal(atomic_load(&sleeps_cancelled), 1);
}

/* A cancel after the reply finds nothing, and leaves no trace: the next
 * call with the same id runs. One that names no id is refused. */
static void
test_cancel_after_the_reply_and_without_an_id(void **state)
{
	fixture              *f = *state;
	pending              *e = start(f->conn[0], ECHO, "e", NULL, NULL, 0);
	Nngrpc__V1__Response *r = finish(e);

	assert_int_equal(r->code, NNGRPC_OK);
	nngrpc__v1__response__free_unpacked(r, NULL);
	assert_int_equal(cancel(f->conn[0], "e"), NNGRPC_OK);
	e = start(f->conn[0], ECHO, "e", NULL, NULL, 0);
	r = finish(e);
	assert_int_equal(r->code, NNGRPC_OK);
	nngrpc__v1__response__free_unpacked(r, NULL);
	assert_int_equal(atomic_load(&echoes), 2);

	pending *c = start(f->conn[0], CANCEL, "x", NULL, NULL, 0);
	r = finish(c);
	assert_int_equal(r->code, NNGRPC_INVALID_ARGUMENT);
	assert_non_null(strstr(r->message, "no nngrpc-cancel metadata"));
	nngrpc__v1__response__free_unpacked(r, NULL);
}

/* A queued call that is cancelled never runs: CANCELLED, not run. */
static void
test_cancel_of_a_queued_call(void **state)
{
	fixture *f = *state;
	pending *a = start_sleep(f->conn[0], "a", 5000);
	pending *q = start(f->conn[0], ECHO, "q", NULL, NULL, 0);

	assert_true(still_running(q)); /* queued behind a */
	assert_int_equal(cancel(f->conn[0], "q"), NNGRPC_OK);
	assert_int_equal(cancel(f->conn[0], "a"), NNGRPC_OK);
	expect_cancelled(a, "sleep: cancelled", false);
	expect_cancelled(q, "not run", true);
	assert_int_equal(atomic_load(&echoes), 0);
}

/* A request id longer than the server keeps is not cancelled by id (the
 * cancel is still OK); closing the connection cancels it. */
static void
test_long_id_and_closed_connection(void **state)
{
	fixture *f = *state;
	char     rid[201];
	int64_t  until = nngrpc_now_ns() + 5LL * 1000000000;

	memset(rid, 'x', sizeof(rid) - 1);
	rid[sizeof(rid) - 1] = '\0';
	pending *a = start_sleep(f->conn[0], rid, 5000);
	assert_int_equal(cancel(f->conn[0], rid), NNGRPC_OK);
	assert_true(still_running(a));
	nng_aio_free(a->aio); /* stops waiting, then the connection goes */
	free(a);
	nng_close(f->conn[0]);
	while (atomic_load(&sleeps_cancelled) == 0) {
		assert_true(nngrpc_now_ns() < until);
		usleep(1000);
	}
	/* The worker is free again. */
	pending              *e = start(f->conn[1], ECHO, "e", NULL, NULL, 0);
	Nngrpc__V1__Response *r = finish(e);
	assert_int_equal(r->code, NNGRPC_OK);
	nngrpc__v1__response__free_unpacked(r, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_cancel_by_request_id, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_cancel_after_the_reply_and_without_an_id, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_cancel_of_a_queued_call, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_long_id_and_closed_connection, setup, teardown),
	};
	return (cmocka_run_group_tests_name("cancel", tests, NULL, NULL));
}
