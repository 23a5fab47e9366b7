/*
 * nngrpc-bench: a load generator for nngrpc servers, closed loop (a fixed
 * number of calls in flight) or open loop (--rate: calls started at a fixed
 * rate, whatever happened to the ones before), and with --raw for any NNG
 * REP server that echoes (the transport's floor).
 *
 * DESIGN
 * ------
 * One REQ socket dials the server (--connections pipes; REQ spreads calls
 * over them). --concurrency calls are kept in flight, each on its own
 * nng_ctx with its own nng_aio, so no two calls ever share a context
 * (nng#1302). A call is a small state machine run by its aio callback on
 * NNG's threads:
 *
 *   SEND --sent--> RECV --reply--> check, record --> SEND ...
 *     \--error--> record --> SEND ...            (until the run ends)
 *
 * Open loop (--rate R): the main thread starts call k at t0 + k/R on a
 * context from a free list, and a finished call goes back to the list
 * instead of sending again. Latency then runs from the call's due time, so
 * a call that a busy generator sends late is not flattered (coordinated
 * omission); a call due while every context is busy is counted unsent.
 *
 * The callbacks never block (nng#856). Request resend is off
 * (NNG_OPT_REQ_RESENDTIME infinite), as in every nngrpc client: a resend
 * would run a call twice and hide a slow server.
 *
 * The request is packed once (the envelope around the input message); each
 * call copies it into a new nng_msg, since a send consumes its message.
 * Replies are checked without unpacking: nngrpc_wire_scan_response()
 * (src/rpc/wire.h) reads the Response's code, payload and timings straight
 * from the message, so the generator spends as little CPU as it can on the
 * machine it shares with the server. With --payload-bytes on an Echo method
 * the payload must come back byte for byte (EchoResponse and EchoRequest
 * have the same encoding); in --raw mode the whole reply must equal the
 * request.
 *
 * Latencies (send to reply) of successful calls go into one log-linear
 * histogram, those of calls the server refused (RESOURCE_EXHAUSTED: a full
 * queue, or shed) into another, 64 linear buckets per power of two (< 1.6 %
 * error, about 0.8 % on the midpoint), updated with relaxed atomics: memory
 * does not grow with the run. Only calls that end inside the measured window
 * (after
 * --warmup) are counted.
 *
 * Threads: main parses, dials, starts the calls, sleeps, stops, waits for
 * the calls in flight and prints. Callbacks touch their own call and the
 * atomics of the run; `b_mtx` guards `b_active` only.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <nngrpc/status.h>

#include "nngrpc/testing/v1/testing.pb-c.h"
#include "nngrpc/v1/rpc.pb-c.h"
#include "wire.h"

#define BENCH_VERSION "1"

/* ---- options ------------------------------------------------------------ */

typedef struct options {
	const char *url;
	const char *method;
	const char *request_file;
	long long   payload_bytes; /* -1: not given */
	int         concurrency;
	int         connections;
	double      duration_s;
	double      warmup_s;
	int         timeout_ms;
	double      rate; /* calls/s started, open loop; 0: closed loop */
	bool        raw;
	bool        json;
	bool        verify;
	bool        quiet;
} options;

static const char usage_text[]
    = "Usage: nngrpc-bench --url URL [--method NAME] [options]\n"
      "\n"
      "Load generator for nngrpc servers: keeps --concurrency calls in\n"
      "flight on one NNG REQ socket (closed loop), or starts --rate calls\n"
      "a second (open loop), for --duration seconds and prints calls/s,\n"
      "latency percentiles and errors by status code.\n"
      "For capacity planning, raise --concurrency until calls/s stops\n"
      "growing: that is the server's capacity, and the latency there is\n"
      "what a saturated server gives. Run it from another machine when\n"
      "the server needs every core.\n"
      "\n"
      "What to call:\n"
      "  --url URL            tcp://HOST:PORT or ipc:///PATH\n"
      "  --method NAME        full method name (default\n"
      "                       /nngrpc.testing.v1.Testing/Echo)\n"
      "  --payload-bytes N    send an EchoRequest with N payload bytes (for\n"
      "                       Echo, whose reply is checked byte for byte);\n"
      "                       the default, with 64, when no --request-file\n"
      "  --request-file FILE  send FILE as the serialized input message of\n"
      "                       any method, e.g. a SearchRequest written with\n"
      "                       SerializeToString()\n"
      "  --raw                no envelope: send the payload bytes (or FILE)\n"
      "                       as the whole message and expect them back;\n"
      "                       for a plain NNG REP echo server (the floor)\n"
      "\n"
      "How hard:\n"
      "  --concurrency N      calls in flight, each on its own nng_ctx\n"
      "                       (default 1)\n"
      "  --connections N      connections the REQ socket dials; calls are\n"
      "                       spread over them (default 1)\n"
      "  --duration SECONDS   measured time (default 5)\n"
      "  --warmup SECONDS     calls before the measured time, not counted\n"
      "                       (default 0.5)\n"
      "  --timeout-ms MS      the deadline sent with each call; the client\n"
      "                       itself gives up 1 s later (default 5000)\n"
      "  --rate CALLS         open loop: start this many calls a second,\n"
      "                       each when due, on one of --concurrency\n"
      "                       contexts (a call due while all are busy is\n"
      "                       counted unsent); latency runs from the due\n"
      "                       time\n"
      "\n"
      "Output:\n"
      "  --json               one JSON object on stdout instead of text\n"
      "  --no-verify          do not compare echoed bytes\n"
      "  --quiet              no progress line on stderr\n"
      "  --help               this text\n"
      "\n"
      "JSON fields: calls, ok, errors (in the measured time), calls_started\n"
      "(every call sent, warmup included), calls_per_s, latency_us {p50,\n"
      "p90, p99, p999, max, mean}, server_us {queue_mean, run_mean},\n"
      "errors_by_code {name: count}, refused {count, latency_us {p50,\n"
      "p99, max}} (calls answered RESOURCE_EXHAUSTED), rate and unsent\n"
      "(open loop), and the options used.\n"
      "\n"
      "Latency runs from handing the request to NNG to having the reply,\n"
      "for successful calls (percentiles within 1 %). Errors are counted\n"
      "by status name (RESOURCE_EXHAUSTED, ...), \"nng: <error>\" for\n"
      "transport errors and timeouts, and \"bad_reply\" for a reply that is\n"
      "not an envelope or whose echoed bytes differ. \"server us\" are the\n"
      "means of the server's own queue and run times from the replies.\n"
      "\n"
      "Exit status: 0 every measured call succeeded; 3 some calls failed\n"
      "(the results are still printed); 1 could not run (dial failed, out\n"
      "of memory); 2 bad usage.\n"
      "\n"
      "Example:\n"
      "  nngrpc-bench --url tcp://127.0.0.1:5555 --concurrency 64 \\\n"
      "      --payload-bytes 1024 --duration 10\n";

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "nngrpc-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'nngrpc-bench --help'.\n");
	exit(2);
}

static long long
parse_int(const char *flag, const char *s, long long min, long long max)
{
	char     *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		usage_error("%s: expected an integer in %lld..%lld, got '%s'",
		    flag, min, max, s);
	}
	return (v);
}

static double
parse_seconds(const char *flag, const char *s, double min)
{
	char  *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min)
	    || v > 86400.0) {
		usage_error("%s: expected seconds (%g..86400), got '%s'", flag,
		    min, s);
	}
	return (v);
}

/* Sets a switch (an option without a value); false when name is none. */
static bool
set_switch(options *o, const char *name)
{
	if (strcmp(name, "--raw") == 0) {
		o->raw = true;
	} else if (strcmp(name, "--json") == 0) {
		o->json = true;
	} else if (strcmp(name, "--no-verify") == 0) {
		o->verify = false;
	} else if (strcmp(name, "--quiet") == 0) {
		o->quiet = true;
	} else {
		return (false);
	}
	return (true);
}

/* True for an option that takes a value (set_value() knows it). */
static bool
takes_value(const char *name)
{
	static const char *const names[]
	    = { "--url", "--method", "--payload-bytes", "--request-file",
		      "--concurrency", "--connections", "--duration",
		      "--warmup", "--timeout-ms", "--rate" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			return (true);
		}
	}
	return (false);
}

/* Sets an option that takes a value. */
static void
set_value(options *o, const char *name, const char *v)
{
	if (strcmp(name, "--url") == 0) {
		o->url = v;
	} else if (strcmp(name, "--method") == 0) {
		o->method = v;
	} else if (strcmp(name, "--payload-bytes") == 0) {
		o->payload_bytes = parse_int(name, v, 0, 1LL << 31);
	} else if (strcmp(name, "--request-file") == 0) {
		o->request_file = v;
	} else if (strcmp(name, "--concurrency") == 0) {
		o->concurrency = (int) parse_int(name, v, 1, 100000);
	} else if (strcmp(name, "--connections") == 0) {
		o->connections = (int) parse_int(name, v, 1, 1024);
	} else if (strcmp(name, "--duration") == 0) {
		o->duration_s = parse_seconds(name, v, 0.01);
	} else if (strcmp(name, "--warmup") == 0) {
		o->warmup_s = parse_seconds(name, v, 0.0);
	} else if (strcmp(name, "--rate") == 0) {
		o->rate = (double) parse_int(name, v, 1, 10000000);
	} else if (strcmp(name, "--timeout-ms") == 0) {
		o->timeout_ms
		    = (int) parse_int(name, v, 1, 24LL * 3600 * 1000);
	} else {
		usage_error("unknown option '%s'", name);
	}
}

/* What the options say together. */
static void
check_options(options *o)
{
	if (o->url == NULL) {
		usage_error("%s is required", "--url");
	}
	if (o->request_file != NULL && o->payload_bytes >= 0) {
		usage_error("--payload-bytes and --request-file exclude each "
		            "other");
	}
	if (o->request_file == NULL && o->payload_bytes < 0) {
		o->payload_bytes = 64;
	}
	if (!o->raw && o->method[0] != '/') {
		usage_error("--method: expected /package.Service/Method, got "
		            "'%s'",
		    o->method);
	}
}

/* --flag=value or --flag value, --switch; exits on bad usage. */
static void
parse_options(int argc, char **argv, options *o)
{
	*o = (options) { .method = "/nngrpc.testing.v1.Testing/Echo",
		.payload_bytes = -1,
		.concurrency = 1,
		.connections = 1,
		.duration_s = 5.0,
		.warmup_s = 0.5,
		.timeout_ms = 5000,
		.verify = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *eq = strchr(a, '=');
		size_t      n = eq != NULL ? (size_t) (eq - a) : strlen(a);
		char        name[64];

		if (strncmp(a, "--", 2) != 0) {
			usage_error("unexpected argument '%s'", a);
		}
		if (n >= sizeof(name)) {
			usage_error("unknown option '%s'", a);
		}
		memcpy(name, a, n);
		name[n] = '\0';
		if (strcmp(name, "--help") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (set_switch(o, name)) {
			if (eq != NULL) {
				usage_error("%s takes no value", name);
			}
		} else if (!takes_value(name)) {
			usage_error("unknown option '%s'", a);
		} else if (eq != NULL) {
			set_value(o, name, eq + 1);
		} else if (i + 1 < argc) {
			set_value(o, name, argv[++i]);
		} else {
			usage_error("%s needs a value", name);
		}
	}
	check_options(o);
}

/* ---- latency histogram -------------------------------------------------- */

/* Values below 128 ns have their own bucket; above, 64 buckets per power of
 * two. Values are clamped below 2^47 ns (39 hours). */
#define HIST_MAX_BIT 47
#define HIST_BUCKETS (64 * (HIST_MAX_BIT - 6 + 2))

static size_t
hist_index(uint64_t v)
{
	int e;

	if (v < 128) {
		return ((size_t) v);
	}
	if (v >= (1ULL << HIST_MAX_BIT)) {
		v = (1ULL << HIST_MAX_BIT) - 1;
	}
	e = 63 - __builtin_clzll(v) - 6;
	return ((size_t) e * 64 + (size_t) (v >> e));
}

/* The middle of bucket i, in ns. */
static double
hist_value(size_t i)
{
	size_t e;

	if (i < 128) {
		return ((double) i);
	}
	e = i / 64 - 1;
	return ((double) ((uint64_t) (i % 64 + 64) << e)
	    + (double) (1ULL << e) / 2.0);
}

/* ---- the run ------------------------------------------------------------ */

/* Error slots: the 17 status codes, then transport errors by nng errno,
 * then the rest. */
#define ERR_NNG_BASE  NNGRPC_STATUS_COUNT
#define ERR_NNG_COUNT 32
#define ERR_BAD_CODE  (ERR_NNG_BASE + ERR_NNG_COUNT)
#define ERR_BAD_REPLY (ERR_BAD_CODE + 1)
#define ERR_SLOTS     (ERR_BAD_REPLY + 1)

typedef enum { CALL_IDLE, CALL_SEND, CALL_RECV } call_state;

struct bench;

typedef struct call {
	struct bench *c_bench;
	nng_ctx       c_ctx;
	nng_aio      *c_aio;
	call_state    c_state;
	int64_t       c_start_ns;
} call;

typedef struct bench {
	options        b_opt;
	nng_socket     b_sock;
	uint8_t       *b_request; /* the whole message body, packed once */
	size_t         b_request_len;
	size_t         b_input_len; /* the input message (or raw payload) */
	const uint8_t *b_expect;    /* payload the reply must carry, or NULL */
	size_t         b_expect_len;
	call          *b_calls;

	int64_t     b_begin_ns; /* measured window: [begin, end) */
	int64_t     b_end_ns;
	atomic_bool b_stop; /* no new calls */

	_Atomic uint64_t b_ok;
	_Atomic uint64_t b_errors[ERR_SLOTS];
	_Atomic uint64_t b_hist[HIST_BUCKETS];
	_Atomic uint64_t b_lat_sum_ns;
	_Atomic uint64_t b_lat_max_ns;
	_Atomic uint64_t b_queue_us; /* server's own timings, summed */
	_Atomic uint64_t b_run_us;
	_Atomic uint64_t b_started; /* calls sent, warmup and drain included */
	/* Calls answered RESOURCE_EXHAUSTED: their latencies. */
	_Atomic uint64_t b_rej_hist[HIST_BUCKETS];
	_Atomic uint64_t b_rej_max_ns;
	_Atomic uint64_t b_unsent; /* open loop: due, no free context */

	pthread_mutex_t b_mtx;
	pthread_cond_t  b_cv;
	int             b_active; /* calls not idle; guarded by b_mtx */
	call          **b_free;   /* open loop: idle calls; b_mtx */
	int             b_n_free; /* guarded by b_mtx */
} bench;

static int64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static bool
in_window(const bench *b, int64_t t)
{
	return (t >= b->b_begin_ns && t < b->b_end_ns);
}

static void
count_error(bench *b, int slot, int64_t t)
{
	if (in_window(b, t)) {
		atomic_fetch_add_explicit(
		    &b->b_errors[slot], 1, memory_order_relaxed);
	}
}

/* Raises *max to v. */
static void
atomic_max(_Atomic uint64_t *max, uint64_t v)
{
	uint64_t m = atomic_load_explicit(max, memory_order_relaxed);

	while (v > m
	    && !atomic_compare_exchange_weak_explicit(
	        max, &m, v, memory_order_relaxed, memory_order_relaxed)) { }
}

/* A call the server refused (RESOURCE_EXHAUSTED) ended at end. */
static void
record_refused(bench *b, int64_t start, int64_t end)
{
	uint64_t lat = (uint64_t) (end - start);

	if (in_window(b, end)) {
		atomic_fetch_add_explicit(
		    &b->b_rej_hist[hist_index(lat)], 1, memory_order_relaxed);
		atomic_max(&b->b_rej_max_ns, lat);
	}
}

static void
record_ok(
    bench *b, int64_t start, int64_t end, uint64_t queue_us, uint64_t run_us)
{
	uint64_t lat = (uint64_t) (end - start);

	if (!in_window(b, end)) {
		return;
	}
	atomic_fetch_add_explicit(&b->b_ok, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(
	    &b->b_hist[hist_index(lat)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->b_lat_sum_ns, lat, memory_order_relaxed);
	atomic_fetch_add_explicit(
	    &b->b_queue_us, queue_us, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->b_run_us, run_us, memory_order_relaxed);
	atomic_max(&b->b_lat_max_ns, lat);
}

/* ---- reply check: a zero-copy scan of nngrpc.v1.Response ---------------- */

/* Returns the error slot for a reply, or -1 when the call succeeded. */
static int
check_reply(bench *b, nng_msg *msg, nngrpc_wire_response *r)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t         len = nng_msg_len(msg);

	if (b->b_opt.raw) {
		memset(r, 0, sizeof(*r));
		if (len != b->b_request_len
		    || (b->b_opt.verify
		        && memcmp(body, b->b_request, len) != 0)) {
			return (ERR_BAD_REPLY);
		}
		return (-1);
	}
	if (!nngrpc_wire_scan_response(body, len, r)) {
		return (ERR_BAD_REPLY);
	}
	if (r->code != 0) {
		if (r->code > 0 && r->code < NNGRPC_STATUS_COUNT) {
			return ((int) r->code);
		}
		return (ERR_BAD_CODE);
	}
	if (b->b_expect != NULL
	    && (r->payload_len != b->b_expect_len
	        || (b->b_opt.verify && r->payload_len > 0
	            && memcmp(r->payload, b->b_expect, r->payload_len)
	                != 0))) {
		return (ERR_BAD_REPLY);
	}
	return (-1);
}

/* ---- calls (NNG's threads) ---------------------------------------------- */

static int
nng_error_slot(int rv)
{
	return (
	    rv > 0 && rv < ERR_NNG_COUNT ? ERR_NNG_BASE + rv : ERR_NNG_BASE);
}

static void
call_idle(call *c)
{
	bench *b = c->c_bench;

	c->c_state = CALL_IDLE;
	pthread_mutex_lock(&b->b_mtx);
	if (--b->b_active == 0) {
		pthread_cond_broadcast(&b->b_cv);
	}
	pthread_mutex_unlock(&b->b_mtx);
}

/* Open loop: c goes back to the free list. */
static void
call_park(call *c)
{
	bench *b = c->c_bench;

	c->c_state = CALL_IDLE;
	pthread_mutex_lock(&b->b_mtx);
	b->b_free[b->b_n_free++] = c;
	if (--b->b_active == 0) {
		pthread_cond_broadcast(&b->b_cv);
	}
	pthread_mutex_unlock(&b->b_mtx);
}

/* Sends a call on c, due at due_ns (its latency runs from there). */
static void
call_send(call *c, int64_t due_ns)
{
	bench   *b = c->c_bench;
	nng_msg *msg;
	int      rv;

	if ((rv = nng_msg_alloc(&msg, b->b_request_len)) != 0) {
		count_error(b, nng_error_slot(rv), now_ns());
		b->b_opt.rate > 0 ? call_park(c) : call_idle(c);
		return;
	}
	memcpy(nng_msg_body(msg), b->b_request, b->b_request_len);
	atomic_fetch_add_explicit(&b->b_started, 1, memory_order_relaxed);
	c->c_state = CALL_SEND;
	c->c_start_ns = due_ns;
	nng_aio_set_msg(c->c_aio, msg);
	nng_ctx_send(c->c_ctx, c->c_aio);
}

/* A call on c ended: closed loop, the next one starts on c (or c parks
 * when the run is over); open loop, c goes back to the free list. */
static void
call_start(call *c)
{
	bench *b = c->c_bench;

	if (b->b_opt.rate > 0) {
		call_park(c);
	} else if (atomic_load_explicit(&b->b_stop, memory_order_relaxed)) {
		call_idle(c);
	} else {
		call_send(c, now_ns());
	}
}

static void
call_cb(void *arg)
{
	call                *c = arg;
	bench               *b = c->c_bench;
	int                  rv = nng_aio_result(c->c_aio);
	int64_t              t;
	nng_msg             *msg;
	nngrpc_wire_response r;
	int                  slot;

	switch (c->c_state) {
	case CALL_SEND:
		if (rv != 0) {
			/* Not sent: the message is still ours. */
			nng_msg_free(nng_aio_get_msg(c->c_aio));
			nng_aio_set_msg(c->c_aio, NULL);
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
				call_idle(c);
				return;
			}
			count_error(b, nng_error_slot(rv), now_ns());
			call_start(c);
			return;
		}
		c->c_state = CALL_RECV;
		nng_ctx_recv(c->c_ctx, c->c_aio);
		return;
	case CALL_RECV:
		t = now_ns();
		if (rv != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
				call_idle(c);
				return;
			}
			count_error(b, nng_error_slot(rv), t);
			call_start(c);
			return;
		}
		msg = nng_aio_get_msg(c->c_aio);
		nng_aio_set_msg(c->c_aio, NULL);
		slot = check_reply(b, msg, &r);
		nng_msg_free(msg);
		if (slot < 0) {
			record_ok(b, c->c_start_ns, t, r.queue_us, r.run_us);
		} else {
			count_error(b, slot, t);
			if (slot == NNGRPC_RESOURCE_EXHAUSTED) {
				record_refused(b, c->c_start_ns, t);
			}
		}
		call_start(c);
		return;
	case CALL_IDLE:
		break;
	}
	fprintf(stderr, "nngrpc-bench: callback on an idle call\n");
	abort(); /* a broken invariant */
}

/* ---- setup -------------------------------------------------------------- */

static int
read_file(const char *path, uint8_t **bufp, size_t *lenp)
{
	FILE    *f;
	uint8_t *buf = NULL;
	size_t   len = 0, cap = 0;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(
		    stderr, "nngrpc-bench: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	for (;;) {
		size_t n;
		if (len == cap) {
			uint8_t *nb;
			cap = cap ? cap * 2 : 65536;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				fprintf(
				    stderr, "nngrpc-bench: out of memory\n");
				return (-1);
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			break;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "nngrpc-bench: %s: read error\n", path);
		free(buf);
		fclose(f);
		return (-1);
	}
	fclose(f);
	*bufp = buf;
	*lenp = len;
	return (0);
}

/* A payload whose bytes differ from call to call position: a server that
 * reorders or truncates is caught by the echo check. */
static void
fill_pattern(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t) (i * 131 + (i >> 8) + 7);
	}
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return (n >= m && strcmp(s + n - m, suffix) == 0);
}

/* Builds b->b_request (the whole message body) and b->b_expect. */
static int
build_request(bench *b)
{
	const options *o = &b->b_opt;
	uint8_t       *input;
	size_t         input_len;
	uint8_t       *raw = NULL;

	if (o->request_file != NULL) {
		if (read_file(o->request_file, &raw, &input_len) != 0) {
			return (-1);
		}
		input = raw;
	} else if (o->raw) {
		input_len = (size_t) o->payload_bytes;
		if ((raw = malloc(input_len ? input_len : 1)) == NULL) {
			return (-1);
		}
		fill_pattern(raw, input_len);
		input = raw;
	} else {
		Nngrpc__Testing__V1__EchoRequest echo
		    = NNGRPC__TESTING__V1__ECHO_REQUEST__INIT;
		uint8_t *payload
		    = malloc(o->payload_bytes ? (size_t) o->payload_bytes : 1);
		if (payload == NULL) {
			return (-1);
		}
		fill_pattern(payload, (size_t) o->payload_bytes);
		echo.payload.data = payload;
		echo.payload.len = (size_t) o->payload_bytes;
		input_len = nngrpc__testing__v1__echo_request__get_packed_size(
		    &echo);
		if ((raw = malloc(input_len ? input_len : 1)) == NULL) {
			free(payload);
			return (-1);
		}
		nngrpc__testing__v1__echo_request__pack(&echo, raw);
		free(payload);
		input = raw;
		/* EchoResponse{payload} encodes exactly as EchoRequest. */
		if (ends_with(o->method, "/Echo")) {
			b->b_expect = raw;
			b->b_expect_len = input_len;
		}
	}

	b->b_input_len = input_len;
	if (o->raw) {
		b->b_request = input;
		b->b_request_len = input_len;
		return (0);
	}

	Nngrpc__V1__Request req = NNGRPC__V1__REQUEST__INIT;
	req.method = (char *) o->method;
	req.timeout_us = (uint64_t) o->timeout_ms * 1000;
	req.payload.data = input;
	req.payload.len = input_len;
	b->b_request_len = nngrpc__v1__request__get_packed_size(&req);
	if ((b->b_request = malloc(b->b_request_len)) == NULL) {
		free(raw);
		return (-1);
	}
	nngrpc__v1__request__pack(&req, b->b_request);
	if (b->b_expect == NULL) {
		free(raw);
	}
	/* else raw stays alive as b_expect; freed at exit. */
	return (0);
}

static int
open_socket(bench *b)
{
	const options *o = &b->b_opt;
	int            rv;

	if ((rv = nng_req0_open(&b->b_sock)) != 0) {
		fprintf(stderr, "nngrpc-bench: cannot open a REQ socket: %s\n",
		    nng_strerror(rv));
		return (-1);
	}
	/* No resend (it would run calls twice), no receive limit (the
	 * default 1 MiB would silently drop large replies). */
	if ((rv = nng_socket_set_ms(
	         b->b_sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE))
	        != 0
	    || (rv = nng_socket_set_size(b->b_sock, NNG_OPT_RECVMAXSZ, 0))
	        != 0) {
		fprintf(stderr, "nngrpc-bench: socket options: %s\n",
		    nng_strerror(rv));
		return (-1);
	}
	for (int i = 0; i < o->connections; i++) {
		if ((rv = nng_dial(b->b_sock, o->url, NULL, 0)) != 0) {
			fprintf(stderr, "nngrpc-bench: cannot dial %s: %s\n",
			    o->url, nng_strerror(rv));
			return (-1);
		}
	}
	return (0);
}

static int
open_calls(bench *b)
{
	const options *o = &b->b_opt;
	int            rv;

	if ((b->b_calls = calloc((size_t) o->concurrency, sizeof(*b->b_calls)))
	        == NULL
	    || (b->b_free = calloc((size_t) o->concurrency, sizeof(call *)))
	        == NULL) {
		fprintf(stderr, "nngrpc-bench: out of memory\n");
		return (-1);
	}
	for (int i = 0; i < o->concurrency; i++) {
		call *c = &b->b_calls[i];
		c->c_bench = b;
		if ((rv = nng_ctx_open(&c->c_ctx, b->b_sock)) != 0
		    || (rv = nng_ctx_set_ms(c->c_ctx, NNG_OPT_REQ_RESENDTIME,
		            NNG_DURATION_INFINITE))
		        != 0
		    || (rv = nng_aio_alloc(&c->c_aio, call_cb, c)) != 0) {
			fprintf(stderr, "nngrpc-bench: contexts: %s\n",
			    nng_strerror(rv));
			return (-1);
		}
		/* The client waits past the server-side deadline so the
		 * server's DEADLINE_EXCEEDED, not ours, usually ends a call.
		 */
		nng_aio_set_timeout(c->c_aio, o->timeout_ms + 1000);
	}
	return (0);
}

static void
sleep_until(int64_t t)
{
	struct timespec ts = { .tv_sec = (time_t) (t / 1000000000),
		.tv_nsec = (long) (t % 1000000000) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
	    == EINTR) { }
}

/* ---- results ------------------------------------------------------------ */

typedef struct results {
	double   seconds;
	uint64_t ok;
	uint64_t errors;
	double   rate;
	double   p50_us, p90_us, p99_us, p999_us, max_us, mean_us;
	double   queue_us, run_us; /* means of the server's timings */
	uint64_t refused;          /* RESOURCE_EXHAUSTED */
	double   rej_p50_us, rej_p99_us, rej_max_us;
	uint64_t unsent;
} results;

static double
percentile_us(const _Atomic uint64_t *hist, uint64_t total, double q)
{
	uint64_t want = (uint64_t) (q * (double) total + 0.5);
	uint64_t seen = 0;

	if (want < 1) {
		want = 1;
	}
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += atomic_load(&hist[i]);
		if (seen >= want) {
			return (hist_value(i) / 1000.0);
		}
	}
	return (0.0);
}

static void
compute(const bench *b, results *r)
{
	memset(r, 0, sizeof(*r));
	r->seconds = (double) (b->b_end_ns - b->b_begin_ns) / 1e9;
	r->ok = atomic_load(&b->b_ok);
	for (int i = 0; i < ERR_SLOTS; i++) {
		r->errors += atomic_load(&b->b_errors[i]);
	}
	r->rate = (double) r->ok / r->seconds;
	if (r->ok > 0) {
		r->p50_us = percentile_us(b->b_hist, r->ok, 0.50);
		r->p90_us = percentile_us(b->b_hist, r->ok, 0.90);
		r->p99_us = percentile_us(b->b_hist, r->ok, 0.99);
		r->p999_us = percentile_us(b->b_hist, r->ok, 0.999);
		r->max_us = (double) atomic_load(&b->b_lat_max_ns) / 1000.0;
		r->mean_us = (double) atomic_load(&b->b_lat_sum_ns) / 1000.0
		    / (double) r->ok;
		r->queue_us
		    = (double) atomic_load(&b->b_queue_us) / (double) r->ok;
		r->run_us
		    = (double) atomic_load(&b->b_run_us) / (double) r->ok;
	}
	r->refused = atomic_load(&b->b_errors[NNGRPC_RESOURCE_EXHAUSTED]);
	if (r->refused > 0) {
		r->rej_p50_us = percentile_us(b->b_rej_hist, r->refused, 0.50);
		r->rej_p99_us = percentile_us(b->b_rej_hist, r->refused, 0.99);
		r->rej_max_us
		    = (double) atomic_load(&b->b_rej_max_ns) / 1000.0;
	}
	r->unsent = atomic_load(&b->b_unsent);
}

/* Writes the name of error slot i into buf. */
static void
error_name(int i, char *buf, size_t len)
{
	if (i < NNGRPC_STATUS_COUNT) {
		snprintf(buf, len, "%s", nngrpc_status_name(i));
	} else if (i == ERR_NNG_BASE) {
		snprintf(buf, len, "nng: other error");
	} else if (i < ERR_BAD_CODE) {
		snprintf(buf, len, "nng: %s", nng_strerror(i - ERR_NNG_BASE));
	} else if (i == ERR_BAD_CODE) {
		snprintf(buf, len, "bad_status_code");
	} else {
		snprintf(buf, len, "bad_reply");
	}
}

static void
json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char) *s;
		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else if (c < 0x20) {
			fprintf(f, "\\u%04x", c);
		} else {
			fputc(c, f);
		}
	}
	fputc('"', f);
}

/* Payload bytes: --payload-bytes, or the size of the request file. */
static size_t
payload_size(const bench *b)
{
	if (b->b_opt.request_file != NULL) {
		return (b->b_input_len);
	}
	return ((size_t) b->b_opt.payload_bytes);
}

static void
print_json(const bench *b, const results *r)
{
	const options *o = &b->b_opt;
	bool           first = true;
	char           name[96];

	printf("{\"tool\": \"nngrpc-bench\", \"version\": " BENCH_VERSION
	       ", \"url\": ");
	json_string(stdout, o->url);
	printf(
	    ", \"mode\": \"%s\", \"method\": ", o->raw ? "raw" : "envelope");
	if (o->raw) {
		printf("null");
	} else {
		json_string(stdout, o->method);
	}
	printf(", \"payload_bytes\": %zu, \"request_bytes\": %zu",
	    payload_size(b), b->b_request_len);
	printf(", \"concurrency\": %d, \"connections\": %d", o->concurrency,
	    o->connections);
	printf(", \"duration_s\": %.3f, \"warmup_s\": %.3f", r->seconds,
	    o->warmup_s);
	printf(", \"calls\": %" PRIu64 ", \"ok\": %" PRIu64
	       ", \"errors\": %" PRIu64,
	    r->ok + r->errors, r->ok, r->errors);
	printf(", \"calls_started\": %" PRIu64,
	    (uint64_t) atomic_load(&b->b_started));
	printf(", \"calls_per_s\": %.1f", r->rate);
	printf(", \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": "
	       "%.1f, \"p999\": %.1f, \"max\": %.1f, \"mean\": %.1f}",
	    r->p50_us, r->p90_us, r->p99_us, r->p999_us, r->max_us,
	    r->mean_us);
	if (!o->raw) {
		printf(", \"server_us\": {\"queue_mean\": %.1f, "
		       "\"run_mean\": %.1f}",
		    r->queue_us, r->run_us);
	}
	printf(", \"refused\": {\"count\": %" PRIu64
	       ", \"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, "
	       "\"max\": %.1f}}",
	    r->refused, r->rej_p50_us, r->rej_p99_us, r->rej_max_us);
	if (o->rate > 0) {
		printf(", \"rate\": %.1f, \"unsent\": %" PRIu64, o->rate,
		    r->unsent);
	} else {
		printf(", \"rate\": null, \"unsent\": 0");
	}
	printf(", \"errors_by_code\": {");
	for (int i = 0; i < ERR_SLOTS; i++) {
		uint64_t n = atomic_load(&b->b_errors[i]);
		if (n == 0) {
			continue;
		}
		error_name(i, name, sizeof(name));
		printf("%s", first ? "" : ", ");
		json_string(stdout, name);
		printf(": %" PRIu64, n);
		first = false;
	}
	printf("}}\n");
}

static void
print_text(const bench *b, const results *r)
{
	const options *o = &b->b_opt;
	char           name[96];

	if (o->raw) {
		printf("nngrpc-bench: %s, raw %zu-byte messages\n", o->url,
		    b->b_request_len);
	} else {
		printf("nngrpc-bench: %s %s, %zu-byte requests\n", o->url,
		    o->method, b->b_request_len);
	}
	if (o->rate > 0) {
		printf(
		    "  open loop   %.0f calls/s offered, up to %d in flight "
		    "on %d connection%s, %.2f s measured, %" PRIu64
		    " unsent\n",
		    o->rate, o->concurrency, o->connections,
		    o->connections == 1 ? "" : "s", r->seconds, r->unsent);
	} else {
		printf(
		    "  in flight   %d on %d connection%s, %.2f s measured\n",
		    o->concurrency, o->connections,
		    o->connections == 1 ? "" : "s", r->seconds);
	}
	printf("  calls       %" PRIu64 " ok, %" PRIu64 " errors\n", r->ok,
	    r->errors);
	printf("  throughput  %.1f calls/s\n", r->rate);
	if (r->ok > 0) {
		printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 "
		       "%.1f  max %.1f  mean %.1f\n",
		    r->p50_us, r->p90_us, r->p99_us, r->p999_us, r->max_us,
		    r->mean_us);
		if (!o->raw) {
			printf("  server us   queue %.1f  run %.1f (means)\n",
			    r->queue_us, r->run_us);
		}
	}
	if (r->refused > 0) {
		printf("  refused us  p50 %.1f  p99 %.1f  max %.1f "
		       "(RESOURCE_EXHAUSTED)\n",
		    r->rej_p50_us, r->rej_p99_us, r->rej_max_us);
	}
	if (r->errors > 0) {
		printf("  errors     ");
		for (int i = 0; i < ERR_SLOTS; i++) {
			uint64_t n = atomic_load(&b->b_errors[i]);
			if (n > 0) {
				error_name(i, name, sizeof(name));
				printf(" %s %" PRIu64 ";", name, n);
			}
		}
		printf("\n");
	}
}

/* ---- main --------------------------------------------------------------- */

/* Open loop: starts call k at start + k / rate on a free context until
 * the measured window ends. */
static void
pace_calls(bench *b, int64_t start)
{
	double period_ns = 1e9 / b->b_opt.rate;

	for (int i = 0; i < b->b_opt.concurrency; i++) {
		b->b_free[b->b_n_free++] = &b->b_calls[i];
	}
	for (uint64_t k = 0;; k++) {
		int64_t due = start + (int64_t) ((double) k * period_ns);
		call   *c = NULL;

		if (due >= b->b_end_ns) {
			return;
		}
		sleep_until(due);
		pthread_mutex_lock(&b->b_mtx);
		if (b->b_n_free > 0) {
			c = b->b_free[--b->b_n_free];
			b->b_active++;
		}
		pthread_mutex_unlock(&b->b_mtx);
		if (c != NULL) {
			call_send(c, due);
		} else if (in_window(b, due)) {
			atomic_fetch_add_explicit(
			    &b->b_unsent, 1, memory_order_relaxed);
		}
	}
}

/* Starts every call and lets them run through the warmup and the
 * measured window. */
static void
run_window(bench *b)
{
	int64_t start = now_ns();

	b->b_begin_ns = start + (int64_t) (b->b_opt.warmup_s * 1e9);
	b->b_end_ns = b->b_begin_ns + (int64_t) (b->b_opt.duration_s * 1e9);
	if (!b->b_opt.quiet && !b->b_opt.json) {
		fprintf(stderr, "nngrpc-bench: %d in flight for %.1f s...\n",
		    b->b_opt.concurrency,
		    b->b_opt.warmup_s + b->b_opt.duration_s);
	}
	if (b->b_opt.rate > 0) {
		pace_calls(b, start);
		atomic_store(&b->b_stop, true);
		return;
	}
	b->b_active = b->b_opt.concurrency;
	for (int i = 0; i < b->b_opt.concurrency; i++) {
		call_send(&b->b_calls[i], now_ns());
	}
	sleep_until(b->b_end_ns);
	atomic_store(&b->b_stop, true);
}

/* Lets the calls in flight finish (they no longer count), but not longer
 * than one timeout. */
static void
wait_calls(bench *b)
{
	int64_t until
	    = now_ns() + (int64_t) (b->b_opt.timeout_ms + 1000) * 1000000;

	pthread_mutex_lock(&b->b_mtx);
	while (b->b_active > 0 && now_ns() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&b->b_cv, &b->b_mtx, &ts);
	}
	pthread_mutex_unlock(&b->b_mtx);
}

/* Closing the socket aborts what is still in flight; freeing an aio
 * waits for its callback. */
static void
close_bench(bench *b)
{
	nng_close(b->b_sock);
	for (int i = 0; i < b->b_opt.concurrency; i++) {
		nng_aio_free(b->b_calls[i].c_aio);
	}
	free(b->b_calls);
	free(b->b_free);
	free((void *) b->b_expect);
	free(b->b_request);
}

int
main(int argc, char **argv)
{
	static bench b; /* large (the histogram): not on the stack */
	results      r;

	parse_options(argc, argv, &b.b_opt);
	pthread_mutex_init(&b.b_mtx, NULL);
	pthread_cond_init(&b.b_cv, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (build_request(&b) != 0 || open_socket(&b) != 0
	    || open_calls(&b) != 0) {
		return (1);
	}
	run_window(&b);
	wait_calls(&b);
	compute(&b, &r);
	if (b.b_opt.json) {
		print_json(&b, &r);
	} else {
		print_text(&b, &r);
	}
	fflush(stdout);
	close_bench(&b);
	return (r.errors > 0 || r.ok == 0 ? 3 : 0);
}
