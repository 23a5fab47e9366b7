/* Metrics: what is recorded is what is rendered, exactly, from any number
 * of threads, in valid Prometheus text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>

#include <nngrpc/status.h>

#include "metrics.h"

/* ---- a small parser for the exposition text ----------------------------- */

/* Value of the sample whose name-and-labels part is exactly series, or NAN
 * when there is no such line. Fails the test when it appears twice. */
static double
sample(const char *text, const char *series)
{
	size_t      n = strlen(series);
	double      v = NAN;
	int         found = 0;
	const char *p = text;

	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		assert_non_null(eol); /* every line ends with a newline */
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			char *end;
			v = strtod(p + n + 1, &end);
			assert_ptr_equal(end, eol);
			found++;
		}
		p = eol + 1;
	}
	assert_true(found <= 1);
	return (v);
}

static bool
has_line(const char *text, const char *line)
{
	size_t      n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n') {
			return (true);
		}
		p += n;
	}
	return (false);
}

/* Checks the whole text: every sample belongs to a family announced by a
 * HELP and a TYPE line just before its first sample, families are
 * contiguous, and every value parses as a float. */
static void
check_format(const char *text, size_t len)
{
	char        family[256] = "";
	char        type[32] = "";
	char        seen[128][256];
	int         n_seen = 0;
	const char *p = text;

	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		char        line[1024];
		size_t      ll = (size_t) (eol - p);

		assert_true(ll < sizeof(line));
		memcpy(line, p, ll);
		line[ll] = '\0';
		p = eol + 1;
		if (strncmp(line, "# HELP ", 7) == 0) {
			char name[256];
			assert_int_equal(sscanf(line + 7, "%255s", name), 1);
			for (int i = 0; i < n_seen; i++) {
				assert_string_not_equal(seen[i], name);
			}
			assert_true(n_seen < 128);
			snprintf(seen[n_seen++], sizeof(seen[0]), "%s", name);
			snprintf(family, sizeof(family), "%s", name);
			type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[256];
			assert_int_equal(
			    sscanf(line + 7, "%255s %31s", name, type), 2);
			assert_string_equal(name, family);
			assert_true(strcmp(type, "counter") == 0
			    || strcmp(type, "gauge") == 0
			    || strcmp(type, "histogram") == 0);
			continue;
		}
		assert_true(line[0] != '#');
		assert_true(type[0] != '\0');
		/* name{labels} value */
		size_t fl = strlen(family);
		assert_memory_equal(line, family, fl);
		const char *rest = line + fl;
		if (strcmp(type, "histogram") == 0) {
			assert_true(strncmp(rest, "_bucket{", 8) == 0
			    || strncmp(rest, "_sum{", 5) == 0
			    || strncmp(rest, "_count{", 7) == 0);
		} else {
			assert_true(*rest == '{' || *rest == ' ');
		}
		const char *sp = strrchr(line, ' ');
		assert_non_null(sp);
		char *end;
		(void) strtod(sp + 1, &end);
		assert_true(*end == '\0');
	}
}

static char *
render(nngrpc_metrics *m)
{
	char  *text = NULL;
	size_t len = 0;

	assert_int_equal(nngrpc_metrics_render(m, &text, &len), 0);
	assert_non_null(text);
	check_format(text, len);
	return (text);
}

static double
calls(const char *text, const char *method, const char *code)
{
	char series[512];
	snprintf(series, sizeof(series),
	    "nngrpc_calls_total{method=\"%s\",code=\"%s\"}", method, code);
	return (sample(text, series));
}

static double
hsample(const char *text, const char *family, const char *suffix,
    const char *method, const char *le)
{
	char series[512];
	if (le != NULL) {
		snprintf(series, sizeof(series),
		    "%s%s{method=\"%s\",le=\"%s\"}", family, suffix, method,
		    le);
	} else {
		snprintf(series, sizeof(series), "%s%s{method=\"%s\"}", family,
		    suffix, method);
	}
	return (sample(text, series));
}

static const char *const les[] = { "5e-05", "0.0001", "0.00025", "0.0005",
	"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
	"0.5", "1", "2.5", "5", "10", "+Inf" };
#define N_LES (sizeof(les) / sizeof(les[0]))

/* Histogram buckets never decrease and end with _count. */
static void
check_cumulative(const char *text, const char *family, const char *method)
{
	double prev = 0;
	for (size_t i = 0; i < N_LES; i++) {
		double v = hsample(text, family, "_bucket", method, les[i]);
		assert_false(isnan(v));
		assert_true(v >= prev);
		prev = v;
	}
	assert_true(hsample(text, family, "_count", method, NULL) == prev);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_alloc_free(void **state)
{
	nngrpc_metrics *m;
	(void) state;

	nngrpc_metrics_free(NULL);
	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	char *text = render(m);
	/* No methods yet: the families are still announced. */
	assert_non_null(strstr(text, "# TYPE nngrpc_calls_total counter\n"));
	assert_non_null(
	    strstr(text, "# TYPE nngrpc_call_run_seconds histogram\n"));
	assert_null(strstr(text, "method=\"unknown\""));
	free(text);
	nngrpc_metrics_call_done(NULL, 0, 0, 1, 1, 1, 1); /* no-op */
	nngrpc_metrics_free(m);
}

static void
test_counters(void **state)
{
	nngrpc_metrics *m;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	int a = nngrpc_metrics_add_method(m, "/hotel.v1.HotelSearch/Search");
	int b = nngrpc_metrics_add_method(m, "/hotel.v1.HotelSearch/GetHotel");
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(
	    nngrpc_metrics_add_method(m, "/hotel.v1.HotelSearch/Search"), a);
	assert_int_equal(
	    nngrpc_metrics_find_method(m, "/hotel.v1.HotelSearch/GetHotel"),
	    b);
	assert_int_equal(nngrpc_metrics_find_method(m, "/nope/Nope"), -1);

	/* Fresh methods show code="OK" at zero and nothing else. */
	char *text = render(m);
	assert_true(calls(text, "/hotel.v1.HotelSearch/Search", "OK") == 0);
	assert_true(
	    isnan(calls(text, "/hotel.v1.HotelSearch/Search", "NOT_FOUND")));
	free(text);

	for (int i = 0; i < 5; i++) {
		nngrpc_metrics_call_done(m, a, NNGRPC_OK, 1000, 2000, 100, 10);
	}
	nngrpc_metrics_call_done(
	    m, a, NNGRPC_DEADLINE_EXCEEDED, 1000, -1, 7, 3);
	nngrpc_metrics_call_done(m, b, NNGRPC_NOT_FOUND, 1000, 2000, 1, 2);
	/* Unknown method, out-of-range index, out-of-range code. */
	nngrpc_metrics_call_done(m, -1, NNGRPC_UNIMPLEMENTED, 500, -1, 40, 4);
	nngrpc_metrics_call_done(m, 99, NNGRPC_UNIMPLEMENTED, 500, -1, 1, 1);
	nngrpc_metrics_call_done(m, -1, 42, -1, -1, 1, 1);
	/* Rejected before queueing: no timing at all. */
	nngrpc_metrics_call_done(
	    m, b, NNGRPC_RESOURCE_EXHAUSTED, -1, -1, 5, 5);

	text = render(m);
	const char *s = "/hotel.v1.HotelSearch/Search";
	const char *g = "/hotel.v1.HotelSearch/GetHotel";
	assert_true(calls(text, s, "OK") == 5);
	assert_true(calls(text, s, "DEADLINE_EXCEEDED") == 1);
	assert_true(calls(text, g, "OK") == 0);
	assert_true(calls(text, g, "NOT_FOUND") == 1);
	assert_true(calls(text, g, "RESOURCE_EXHAUSTED") == 1);
	assert_true(calls(text, "unknown", "UNIMPLEMENTED") == 2);
	assert_true(calls(text, "unknown", "UNKNOWN") == 1);
	assert_true(isnan(calls(text, "unknown", "OK")));

	assert_true(sample(text,
	                "nngrpc_request_bytes_total{method=\"/hotel.v1."
	                "HotelSearch/Search\"}")
	    == 507);
	assert_true(sample(text,
	                "nngrpc_response_bytes_total{method=\"/hotel.v1."
	                "HotelSearch/Search\"}")
	    == 53);
	assert_true(
	    sample(text, "nngrpc_request_bytes_total{method=\"unknown\"}")
	    == 42);

	/* Timings: the deadline-exceeded call waited but never ran; the
	 * rejected call neither waited nor ran. */
	assert_true(
	    hsample(text, "nngrpc_call_queue_seconds", "_count", s, NULL)
	    == 6);
	assert_true(
	    hsample(text, "nngrpc_call_run_seconds", "_count", s, NULL) == 5);
	assert_true(
	    hsample(text, "nngrpc_call_queue_seconds", "_count", g, NULL)
	    == 1);
	assert_true(
	    hsample(text, "nngrpc_call_run_seconds", "_count", g, NULL) == 1);
	assert_true(hsample(text, "nngrpc_call_queue_seconds", "_count",
	                "unknown", NULL)
	    == 2);
	assert_true(
	    fabs(hsample(text, "nngrpc_call_queue_seconds", "_sum", s, NULL)
	        - 6e-6)
	    < 1e-12);
	assert_true(
	    fabs(hsample(text, "nngrpc_call_run_seconds", "_sum", s, NULL)
	        - 10e-6)
	    < 1e-12);
	free(text);
	nngrpc_metrics_free(m);
}

static void
test_histogram_buckets(void **state)
{
	nngrpc_metrics *m;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	int a = nngrpc_metrics_add_method(m, "/t.S/M");
	/* run times: 0, 10us, 50us (on the bound: le is inclusive), 60us,
	 * 1ms, 3ms, 1s, 10s, 20s */
	static const int64_t runs[] = { 0, 10000, 50000, 60000, 1000000,
		3000000, 1000000000, 10000000000LL, 20000000000LL };
	int64_t              sum = 0;
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		nngrpc_metrics_call_done(m, a, NNGRPC_OK, -1, runs[i], 0, 0);
		sum += runs[i];
	}
	char *text = render(m);
	static const struct {
		const char *le;
		double      n;
	} want[] = {
		{ "5e-05", 3 },
		{ "0.0001", 4 },
		{ "0.00025", 4 },
		{ "0.0005", 4 },
		{ "0.001", 5 },
		{ "0.0025", 5 },
		{ "0.005", 6 },
		{ "0.01", 6 },
		{ "0.5", 6 },
		{ "1", 7 },
		{ "2.5", 7 },
		{ "5", 7 },
		{ "10", 8 },
		{ "+Inf", 9 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		double v = hsample(text, "nngrpc_call_run_seconds", "_bucket",
		    "/t.S/M", want[i].le);
		if (v != want[i].n) {
			fail_msg(
			    "le=%s: %g, want %g", want[i].le, v, want[i].n);
		}
	}
	check_cumulative(text, "nngrpc_call_run_seconds", "/t.S/M");
	check_cumulative(text, "nngrpc_call_queue_seconds", "/t.S/M");
	assert_true(hsample(text, "nngrpc_call_queue_seconds", "_count",
	                "/t.S/M", NULL)
	    == 0);
	assert_true(fabs(hsample(text, "nngrpc_call_run_seconds", "_sum",
	                     "/t.S/M", NULL)
	                - (double) sum / 1e9)
	    < 1e-9);
	free(text);
	nngrpc_metrics_free(m);
}

#define N_THREADS 8
#define N_CALLS   50000

typedef struct rec_arg {
	nngrpc_metrics *m;
	int             idx[2];
	int             seed;
} rec_arg;

static void *
recorder(void *arg)
{
	rec_arg *ra = arg;
	for (int i = 0; i < N_CALLS; i++) {
		int method = ra->idx[i & 1];
		int code = (i % 3 == 0) ? NNGRPC_OK : NNGRPC_NOT_FOUND;
		/* spread the timings across the buckets */
		int64_t ns
		    = (int64_t) ((i * 7919 + ra->seed) % 20000) * 1000000;
		nngrpc_metrics_call_done(
		    ra->m, method, code, ns, ns / 2, 3, 5);
	}
	return (NULL);
}

/* Renders over and over while the recorders run: every render is valid
 * text, and a histogram's _count always equals its +Inf bucket. */
typedef struct render_arg {
	nngrpc_metrics *m;
	atomic_bool    *stop;
	int             renders;
} render_arg;

static void *
renderer(void *arg)
{
	render_arg *ra = arg;
	while (!atomic_load(ra->stop)) {
		char *text = render(ra->m);
		check_cumulative(text, "nngrpc_call_run_seconds", "/t.S/A");
		check_cumulative(text, "nngrpc_call_queue_seconds", "/t.S/B");
		free(text);
		ra->renders++;
	}
	return (NULL);
}

static void
test_concurrent_recording(void **state)
{
	nngrpc_metrics *m;
	pthread_t       th[N_THREADS];
	rec_arg         ra[N_THREADS];
	pthread_t       rt;
	atomic_bool     stop = false;
	render_arg      rda;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	int a = nngrpc_metrics_add_method(m, "/t.S/A");
	int b = nngrpc_metrics_add_method(m, "/t.S/B");
	rda.m = m;
	rda.stop = &stop;
	rda.renders = 0;
	assert_int_equal(pthread_create(&rt, NULL, renderer, &rda), 0);
	for (int t = 0; t < N_THREADS; t++) {
		ra[t].m = m;
		ra[t].idx[0] = a;
		ra[t].idx[1] = b;
		ra[t].seed = t * 131;
		assert_int_equal(
		    pthread_create(&th[t], NULL, recorder, &ra[t]), 0);
	}
	for (int t = 0; t < N_THREADS; t++) {
		pthread_join(th[t], NULL);
	}
	atomic_store(&stop, true);
	pthread_join(rt, NULL);
	assert_true(rda.renders > 0);

	/* Exact sums: per thread, N_CALLS / 2 calls per method, a third of
	 * them OK (i % 3 == 0 over even i for A and odd i for B). */
	long ok_a = 0, ok_b = 0;
	for (int i = 0; i < N_CALLS; i++) {
		if (i % 3 == 0) {
			if ((i & 1) == 0) {
				ok_a++;
			} else {
				ok_b++;
			}
		}
	}
	char  *text = render(m);
	double per = (double) N_THREADS * (N_CALLS / 2);
	assert_true(calls(text, "/t.S/A", "OK") == N_THREADS * ok_a);
	assert_true(calls(text, "/t.S/B", "OK") == N_THREADS * ok_b);
	assert_true(
	    calls(text, "/t.S/A", "NOT_FOUND") == per - N_THREADS * ok_a);
	assert_true(
	    calls(text, "/t.S/B", "NOT_FOUND") == per - N_THREADS * ok_b);
	assert_true(
	    sample(text, "nngrpc_request_bytes_total{method=\"/t.S/A\"}")
	    == per * 3);
	assert_true(
	    sample(text, "nngrpc_response_bytes_total{method=\"/t.S/B\"}")
	    == per * 5);
	assert_true(hsample(text, "nngrpc_call_queue_seconds", "_count",
	                "/t.S/A", NULL)
	    == per);
	assert_true(hsample(text, "nngrpc_call_run_seconds", "_bucket",
	                "/t.S/B", "+Inf")
	    == per);
	check_cumulative(text, "nngrpc_call_run_seconds", "/t.S/A");
	check_cumulative(text, "nngrpc_call_queue_seconds", "/t.S/B");
	free(text);
	nngrpc_metrics_free(m);
}

static double
const_fn(void *arg)
{
	return (*(double *) arg);
}

static void
test_gauges(void **state)
{
	nngrpc_metrics *m;
	double          depth = 7;
	double          reloads = 3;
	double          big = 0.1;
	double          inf = INFINITY;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	assert_int_equal(nngrpc_metrics_add_gauge(m, "nngrpc_queue_depth",
	                     "Calls waiting for a worker.", const_fn, &depth),
	    0);
	assert_int_equal(
	    nngrpc_metrics_add_counter_fn(m, "hotel_dataset_reloads_total",
	        "Dataset reloads.\nSecond line \\ here.", const_fn, &reloads),
	    0);
	assert_int_equal(nngrpc_metrics_add_gauge(
	                     m, "t_fraction", "A fraction.", const_fn, &big),
	    0);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "t_inf", NULL, const_fn, &inf), 0);

	/* Errors: bad names, NULL fn, duplicates, built-in names. */
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "9lives", "", const_fn, &depth),
	    NNG_EINVAL);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "a-b", "", const_fn, &depth),
	    NNG_EINVAL);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "", "", const_fn, &depth), NNG_EINVAL);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, NULL, "", const_fn, &depth),
	    NNG_EINVAL);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "ok_name", "", NULL, NULL),
	    NNG_EINVAL);
	assert_int_equal(nngrpc_metrics_add_gauge(
	                     m, "nngrpc_queue_depth", "", const_fn, &depth),
	    NNG_EEXIST);
	assert_int_equal(nngrpc_metrics_add_counter_fn(
	                     m, "nngrpc_calls_total", "", const_fn, &depth),
	    NNG_EEXIST);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(
	        m, "process_resident_memory_bytes", "", const_fn, &depth),
	    NNG_EEXIST);

	char *text = render(m);
	assert_true(sample(text, "nngrpc_queue_depth") == 7);
	assert_true(sample(text, "hotel_dataset_reloads_total") == 3);
	assert_true(sample(text, "t_fraction") == 0.1);
	assert_true(has_line(text, "t_inf +Inf"));
	assert_true(has_line(text, "# TYPE nngrpc_queue_depth gauge"));
	assert_true(
	    has_line(text, "# TYPE hotel_dataset_reloads_total counter"));
	assert_true(has_line(text,
	    "# HELP hotel_dataset_reloads_total Dataset reloads.\\nSecond "
	    "line \\\\ here."));
	assert_true(has_line(text, "t_fraction 0.1"));
	free(text);

	/* Values are read at render time. */
	depth = 12.5;
	text = render(m);
	assert_true(sample(text, "nngrpc_queue_depth") == 12.5);
	free(text);

	/* The cap. */
	static char names[NNGRPC_METRICS_MAX_FNS][32];
	int         added = 4;
	for (int i = 0; added < NNGRPC_METRICS_MAX_FNS; i++, added++) {
		snprintf(names[i], sizeof(names[i]), "t_gauge_%d", i);
		assert_int_equal(nngrpc_metrics_add_gauge(
		                     m, names[i], "", const_fn, &depth),
		    0);
	}
	assert_int_equal(nngrpc_metrics_add_gauge(
	                     m, "t_one_too_many", "", const_fn, &depth),
	    NNG_ENOMEM);
	text = render(m);
	assert_true(sample(text, "t_gauge_0") == 12.5);
	free(text);
	nngrpc_metrics_free(m);
}

static void
test_process_gauges(void **state)
{
	nngrpc_metrics *m;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	char  *text = render(m);
	double rss = sample(text, "process_resident_memory_bytes");
	double vsz = sample(text, "process_virtual_memory_bytes");
	double st = sample(text, "process_start_time_seconds");
	double fds = sample(text, "process_open_fds");
	double cpu = sample(text, "process_cpu_seconds_total");
	assert_true(rss > 0 && vsz >= rss);
	assert_true(fds >= 3);
	assert_true(cpu >= 0);
	/* Started in the last hour, not in the future. */
	double now = (double) time(NULL);
	assert_true(st <= now + 1 && st > now - 3600);
	assert_true(has_line(text, "# TYPE process_start_time_seconds gauge"));
	free(text);
	nngrpc_metrics_free(m);
}

static void
test_too_many_methods(void **state)
{
	nngrpc_metrics *m;
	char            name[64];
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	assert_int_equal(nngrpc_metrics_add_method(m, NULL), -1);
	assert_int_equal(nngrpc_metrics_add_method(NULL, "/a/b"), -1);
	for (int i = 0; i < NNGRPC_METRICS_MAX_METHODS; i++) {
		snprintf(name, sizeof(name), "/t.S/M%d", i);
		assert_int_equal(nngrpc_metrics_add_method(m, name), i);
	}
	assert_int_equal(nngrpc_metrics_add_method(m, "/t.S/Extra"), -1);
	/* An existing name still answers with its index. */
	assert_int_equal(nngrpc_metrics_add_method(m, "/t.S/M5"), 5);
	nngrpc_metrics_call_done(
	    m, NNGRPC_METRICS_MAX_METHODS - 1, NNGRPC_OK, 1, 1, 1, 1);
	char *text = render(m);
	snprintf(
	    name, sizeof(name), "/t.S/M%d", NNGRPC_METRICS_MAX_METHODS - 1);
	assert_true(calls(text, name, "OK") == 1);
	free(text);
	nngrpc_metrics_free(m);
}

static void
test_label_escaping(void **state)
{
	nngrpc_metrics *m;
	(void) state;

	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	int a = nngrpc_metrics_add_method(m, "/x\"y\\z\nw");
	assert_true(a >= 0);
	nngrpc_metrics_call_done(m, a, NNGRPC_OK, 1, 1, 1, 1);
	char *text = render(m);
	assert_true(calls(text, "/x\\\"y\\\\z\\nw", "OK") == 1);
	free(text);
	nngrpc_metrics_free(m);
}

static double
seven(void *arg)
{
	(void) arg;
	return (7);
}

static bool relay_answers;

/* A relay (process isolation's): the service's gauges read elsewhere. */
static bool
relay(void *arg, double *values, size_t n)
{
	assert_ptr_equal(arg, &relay_answers);
	assert_int_equal(n, 1);
	values[0] = 42;
	return (relay_answers);
}

static char *
extra_text(void *arg)
{
	(void) arg;
	return (
	    strdup("# HELP extra_total Extra.\n# TYPE extra_total counter\n"
	           "extra_total 3\n"));
}

static void
test_relay_and_text(void **state)
{
	nngrpc_metrics *m;
	double          v[4];
	char           *text;

	(void) state;
	assert_int_equal(nngrpc_metrics_alloc(&m), 0);
	/* The runtime's own gauge, then the service's. */
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "own_gauge", "Own.", seven, NULL), 0);
	nngrpc_metrics_mark_service_fns(m);
	assert_int_equal(
	    nngrpc_metrics_add_gauge(m, "svc_gauge", "Svc.", seven, NULL), 0);
	assert_int_equal(nngrpc_metrics_read_service_fns(m, v, 4), 1);
	assert_true(v[0] == 7);
	nngrpc_metrics_set_relay(m, relay, &relay_answers);
	assert_int_equal(nngrpc_metrics_add_text(m, extra_text, NULL), 0);
	assert_int_equal(
	    nngrpc_metrics_add_text(m, extra_text, NULL), NNG_EBUSY);
	relay_answers = true;
	text = render(m);
	assert_true(sample(text, "own_gauge") == 7);
	assert_true(sample(text, "svc_gauge") == 42);
	assert_true(sample(text, "extra_total") == 3);
	free(text);
	relay_answers = false; /* no answer: read here */
	text = render(m);
	assert_true(sample(text, "svc_gauge") == 7);
	free(text);
	nngrpc_metrics_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_free),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_concurrent_recording),
		cmocka_unit_test(test_gauges),
		cmocka_unit_test(test_process_gauges),
		cmocka_unit_test(test_too_many_methods),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_relay_and_text),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
