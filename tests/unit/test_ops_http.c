/* The ops HTTP endpoint over real sockets: a plain TCP client in the test
 * speaks HTTP/1.1 to 127.0.0.1 on a free port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <nng/nng.h>

#include <nngrpc/status.h>

#include "metrics.h"
#include "ops_http.h"

/* ---- a tiny HTTP/1.1 client --------------------------------------------- */

typedef struct http_res {
	int    status;
	char   headers[4096]; /* raw header block, lines end with \r\n */
	char  *body;          /* malloc'd, NUL-terminated */
	size_t body_len;
} http_res;

/* A free TCP port on 127.0.0.1: bind port 0, read it back, close. */
static int
free_port(void)
{
	struct sockaddr_in sa = { 0 };
	socklen_t          sl = sizeof(sa);
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
	close(fd);
	return (ntohs(sa.sin_port));
}

/* Returns a connected socket, or -1 with errno set. */
static int
dial(int port)
{
	struct sockaddr_in sa = { 0 };
	struct timeval     tv = { .tv_sec = 5 };
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return (-1);
	}
	return (fd);
}

static void
send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		s += w;
		n -= (size_t) w;
	}
}

static const char *
header(const http_res *r, const char *name)
{
	static _Thread_local char value[512]; /* client threads */
	size_t                    nl = strlen(name);

	for (const char *p = strstr(r->headers, "\r\n"); p != NULL;
	     p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			const char *end = strstr(v, "\r\n");
			while (*v == ' ') {
				v++;
			}
			snprintf(
			    value, sizeof(value), "%.*s", (int) (end - v), v);
			return (value);
		}
	}
	return (NULL);
}

/*
 * Reads one response from fd: the header block, then Content-Length bytes
 * of body (none for HEAD). Anything after it stays in the socket.
 */
static void
read_response(int fd, bool head, http_res *r)
{
	size_t      n = 0;
	const char *cl;
	char       *end;

	memset(r, 0, sizeof(*r));
	/* Byte by byte up to the blank line: simple, and it never reads
	 * into the next response. */
	while (n < 4 || memcmp(r->headers + n - 4, "\r\n\r\n", 4) != 0) {
		assert_true(n < sizeof(r->headers) - 1);
		ssize_t got = recv(fd, r->headers + n, 1, 0);
		if (got <= 0) {
			fail_msg(
			    "connection ended in the headers (%zu bytes)", n);
		}
		n++;
	}
	r->headers[n] = '\0';
	assert_int_equal(sscanf(r->headers, "HTTP/1.1 %d ", &r->status), 1);
	cl = header(r, "Content-Length");
	assert_non_null(cl);
	r->body_len = head ? 0 : strtoul(cl, &end, 10);
	assert_non_null(r->body = malloc(r->body_len + 1));
	for (size_t got = 0; got < r->body_len;) {
		ssize_t k = recv(fd, r->body + got, r->body_len - got, 0);
		assert_true(k > 0);
		got += (size_t) k;
	}
	r->body[r->body_len] = '\0';
}

/* One request on a fresh connection (Connection: close). */
static void
request(int port, const char *method, const char *path, http_res *r)
{
	char req[512];
	int  fd = dial(port);

	assert_true(fd >= 0);
	snprintf(req, sizeof(req),
	    "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
	    "\r\n",
	    method, path, port);
	send_all(fd, req);
	read_response(fd, strcmp(method, "HEAD") == 0, r);
	close(fd);
}

static void
res_free(http_res *r)
{
	free(r->body);
	r->body = NULL;
}

/* ---- fixtures ----------------------------------------------------------- */

typedef struct fixture {
	atomic_bool     serving;
	atomic_bool     ready;
	nngrpc_metrics *metrics;
	nngrpc_ops     *ops;
	int             port;
} fixture;

static bool
serving_hook(void *arg)
{
	return (atomic_load(&((fixture *) arg)->serving));
}

static bool
ready_hook(void *arg)
{
	return (atomic_load(&((fixture *) arg)->ready));
}

static int
setup(void **state)
{
	fixture         *f;
	nngrpc_ops_hooks hooks;
	char             addr[64];
	char             err[256] = "";
	int              rv;

	f = calloc(1, sizeof(*f));
	atomic_init(&f->serving, true);
	atomic_init(&f->ready, false);
	if (nngrpc_metrics_alloc(&f->metrics) != 0) {
		return (-1);
	}
	int m = nngrpc_metrics_add_method(f->metrics, "/hotel.v1.X/Search");
	nngrpc_metrics_call_done(f->metrics, m, NNGRPC_OK, 1000, 2000, 10, 20);
	hooks.serving = serving_hook;
	hooks.ready = ready_hook;
	hooks.metrics = f->metrics;
	hooks.arg = f;
	/* A port another test may grab between free_port() and start: try
	 * a few. */
	for (int attempt = 0; attempt < 5; attempt++) {
		f->port = free_port();
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
		rv = nngrpc_ops_start(addr, &hooks, &f->ops, err, sizeof(err));
		if (rv == 0) {
			break;
		}
	}
	if (rv != 0) {
		fprintf(stderr, "setup: %s\n", err);
		return (-1);
	}
	assert_int_equal(nngrpc_ops_port(f->ops), f->port);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fixture *f = *state;
	nngrpc_ops_stop(f->ops);
	nngrpc_metrics_free(f->metrics);
	free(f);
	return (0);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_healthz(void **state)
{
	fixture *f = *state;
	http_res r;

	request(f->port, "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok\n");
	assert_string_equal(
	    header(&r, "Content-Type"), "text/plain; charset=utf-8");
	assert_string_equal(header(&r, "Cache-Control"), "no-store");
	res_free(&r);

	atomic_store(&f->serving, false);
	request(f->port, "GET", "/healthz", &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "not serving\n");
	res_free(&r);

	atomic_store(&f->serving, true);
	request(f->port, "GET", "/healthz?verbose=1", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

static void
test_readyz(void **state)
{
	fixture *f = *state;
	http_res r;

	request(f->port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "not ready\n");
	res_free(&r);

	atomic_store(&f->ready, true);
	request(f->port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ready\n");
	res_free(&r);
}

static void
test_metrics(void **state)
{
	fixture *f = *state;
	http_res r;

	request(f->port, "GET", "/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Type"),
	    "text/plain; version=0.0.4; charset=utf-8");
	assert_int_equal(strlen(r.body), r.body_len);
	assert_non_null(strstr(r.body,
	    "\nnngrpc_calls_total{method=\"/hotel.v1.X/Search\",code=\"OK\"} "
	    "1\n"));
	assert_non_null(strstr(r.body, "# TYPE process_start_time_seconds"));
	res_free(&r);
}

static void
test_not_found_and_methods(void **state)
{
	fixture *f = *state;
	http_res r;

	request(f->port, "GET", "/", &r);
	assert_int_equal(r.status, 404);
	res_free(&r);
	request(f->port, "GET", "/healthzz", &r);
	assert_int_equal(r.status, 404);
	res_free(&r);
	request(f->port, "GET", "/metrics/x", &r);
	assert_int_equal(r.status, 404);
	res_free(&r);

	static const char *const bad[]
	    = { "POST", "PUT", "DELETE", "OPTIONS" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		request(f->port, bad[i], "/healthz", &r);
		assert_int_equal(r.status, 405);
		assert_string_equal(header(&r, "Allow"), "GET, HEAD");
		res_free(&r);
	}
	request(f->port, "POST", "/metrics", &r);
	assert_int_equal(r.status, 405);
	res_free(&r);

	/* HEAD: the headers of GET, no body. */
	request(f->port, "HEAD", "/healthz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Length"), "3");
	assert_int_equal(r.body_len, 0);
	res_free(&r);
}

static void
test_keep_alive(void **state)
{
	fixture *f = *state;
	http_res r;
	char     req[1024];
	int      fd = dial(f->port);

	assert_true(fd >= 0);
	/* Three pipelined requests on one connection, one with a body. */
	snprintf(req, sizeof(req),
	    "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
	    "POST /readyz HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
	    "hello"
	    "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
	send_all(fd, req);
	read_response(fd, false, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok\n");
	res_free(&r);
	read_response(fd, false, &r);
	assert_int_equal(r.status, 405);
	res_free(&r);
	read_response(fd, false, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "nngrpc_calls_total"));
	res_free(&r);
	close(fd);
}

#define N_CLIENTS 4
#define N_REQS    25

static void *
client(void *arg)
{
	fixture *f = arg;
	for (int i = 0; i < N_REQS; i++) {
		http_res r;
		request(f->port, "GET", (i & 1) ? "/metrics" : "/healthz", &r);
		if (r.status != 200) {
			free(r.body);
			return ((void *) 1);
		}
		free(r.body);
	}
	return (NULL);
}

static void
test_concurrent_clients(void **state)
{
	fixture  *f = *state;
	pthread_t th[N_CLIENTS];
	void     *rv;

	for (int i = 0; i < N_CLIENTS; i++) {
		pthread_create(&th[i], NULL, client, f);
	}
	for (int i = 0; i < N_CLIENTS; i++) {
		pthread_join(th[i], &rv);
		assert_null(rv);
	}
}

static void
test_bad_addresses(void **state)
{
	nngrpc_ops_hooks         hooks = { 0 };
	nngrpc_ops              *ops = NULL;
	char                     err[256];
	static const char *const bad[] = {
		"",
		"localhost",
		"127.0.0.1:",
		"127.0.0.1:99999",
		"127.0.0.1:80x",
		"127.0.0.1:-1",
		"::1:8080",
		"[::1]8080",
		"[::1]",
		"[]:80",
		"http://127.0.0.1:80",
		"127.0.0.1/x:80",
		"bad host:80",
	};
	(void) state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		int rv
		    = nngrpc_ops_start(bad[i], &hooks, &ops, err, sizeof(err));
		if (rv != NNG_EADDRINVAL) {
			fail_msg("\"%s\": %d (%s)", bad[i], rv, err);
		}
		assert_non_null(strstr(err, "expected HOST:PORT"));
		assert_null(strchr(err, '\n'));
		assert_null(ops);
	}
	assert_int_equal(
	    nngrpc_ops_start(NULL, &hooks, &ops, err, sizeof(err)),
	    NNG_EINVAL);
	assert_int_equal(
	    nngrpc_ops_start("127.0.0.1:0", NULL, &ops, err, sizeof(err)),
	    NNG_EINVAL);
	/* err may be NULL when errlen is 0. */
	assert_int_equal(
	    nngrpc_ops_start("nope", &hooks, &ops, NULL, 0), NNG_EADDRINVAL);
	nngrpc_ops_stop(NULL);
}

static void
test_address_in_use(void **state)
{
	struct sockaddr_in sa = { 0 };
	socklen_t          sl = sizeof(sa);
	nngrpc_ops_hooks   hooks = { 0 };
	nngrpc_ops        *ops = NULL;
	char               addr[64];
	char               err[256] = "";
	int                fd = socket(AF_INET, SOCK_STREAM, 0);
	(void) state;

	/* Someone else listens on the port. */
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));

	assert_int_equal(
	    nngrpc_ops_start(addr, &hooks, &ops, err, sizeof(err)),
	    NNG_EADDRINUSE);
	assert_null(ops);
	assert_non_null(strstr(err, addr));
	assert_non_null(strstr(err, nng_strerror(NNG_EADDRINUSE)));
	close(fd);

	/* The failed start left nothing behind: the port can be used now. */
	assert_int_equal(
	    nngrpc_ops_start(addr, &hooks, &ops, err, sizeof(err)), 0);
	nngrpc_ops_stop(ops);
}

static void
test_port_zero_no_hooks_and_stop(void **state)
{
	nngrpc_ops_hooks hooks = { 0 }; /* no hooks, no metrics */
	nngrpc_ops      *ops = NULL;
	char             err[256];
	http_res         r;
	(void) state;

	assert_int_equal(
	    nngrpc_ops_start("127.0.0.1:0", &hooks, &ops, err, sizeof(err)),
	    0);
	int port = nngrpc_ops_port(ops);
	assert_true(port > 0);
	request(port, "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	request(port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	request(port, "GET", "/metrics", &r);
	assert_int_equal(r.status, 404);
	res_free(&r);

	/* An idle keep-alive connection does not hold stop up. */
	int idle = dial(port);
	assert_true(idle >= 0);
	nngrpc_ops_stop(ops);
	assert_true(dial(port) < 0);
	assert_int_equal(errno, ECONNREFUSED);
	close(idle);
}

static void
test_ipv6_and_any(void **state)
{
	nngrpc_ops_hooks hooks = { 0 };
	nngrpc_ops      *ops = NULL;
	char             err[256];
	http_res         r;
	(void) state;

	/* ":PORT" listens on every interface, 127.0.0.1 included. */
	assert_int_equal(
	    nngrpc_ops_start(":0", &hooks, &ops, err, sizeof(err)), 0);
	request(nngrpc_ops_port(ops), "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	nngrpc_ops_stop(ops);

	assert_int_equal(
	    nngrpc_ops_start("0.0.0.0:0", &hooks, &ops, err, sizeof(err)), 0);
	request(nngrpc_ops_port(ops), "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	nngrpc_ops_stop(ops);

	/* [::1] where the machine has IPv6 loopback. */
	int rv = nngrpc_ops_start("[::1]:0", &hooks, &ops, err, sizeof(err));
	if (rv != 0) {
		print_message("[::1] not available here: %s\n", err);
		return;
	}
	assert_true(nngrpc_ops_port(ops) > 0);
	nngrpc_ops_stop(ops);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_not_found_and_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_keep_alive, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_concurrent_clients, setup, teardown),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_address_in_use),
		cmocka_unit_test(test_port_zero_no_hooks_and_stop),
		cmocka_unit_test(test_ipv6_and_any),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
