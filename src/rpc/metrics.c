/*
 * Metrics registry and Prometheus text rendering.
 *
 * DESIGN
 * ------
 * Recording is on the hot path of every call, rendering is rare (a scrape
 * every few seconds). So recording is a handful of relaxed atomic adds
 * into per-method slots, with no lock and no allocation, and rendering
 * does all the work: it reads every atomic once and formats the text.
 *
 * A method slot (method_stats) holds a counter per status code, request
 * and reply byte counters and two histograms (queue wait, run time). A
 * histogram keeps one non-cumulative count per bucket plus the +Inf
 * bucket and a sum in nanoseconds; render accumulates the buckets, and
 * derives _count from the same reads, so _count always equals the +Inf
 * bucket even while workers record. The slots live in a fixed array of
 * pointers sized at alloc time: registering a method stores the pointer
 * and then publishes the new count with a release store, so a reader that
 * loads the count with acquire sees complete slots, and the array never
 * moves under a reader.
 *
 * Gauges and counter functions are kept the same way (fixed array,
 * published count). Render calls them on its own thread.
 *
 * Threads: registration on one thread (before the server starts);
 * nngrpc_metrics_call_done() on any worker; render on any thread. No
 * field is guarded by a lock. Nothing here ever blocks, logs or
 * allocates while recording.
 */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include <nngrpc/status.h>

/* Histogram upper bounds, 50 us .. 10 s, with their rendered "le". */
#define N_BUCKETS 17
static const int64_t bucket_ns[N_BUCKETS] = {
	50000LL,
	100000LL,
	250000LL,
	500000LL,
	1000000LL,
	2500000LL,
	5000000LL,
	10000000LL,
	25000000LL,
	50000000LL,
	100000000LL,
	250000000LL,
	500000000LL,
	1000000000LL,
	2500000000LL,
	5000000000LL,
	10000000000LL,
};
static const char *const bucket_le[N_BUCKETS] = {
	"5e-05",
	"0.0001",
	"0.00025",
	"0.0005",
	"0.001",
	"0.0025",
	"0.005",
	"0.01",
	"0.025",
	"0.05",
	"0.1",
	"0.25",
	"0.5",
	"1",
	"2.5",
	"5",
	"10",
};

typedef struct histo {
	/* Non-cumulative; [N_BUCKETS] is the +Inf bucket. */
	atomic_uint_fast64_t h_buckets[N_BUCKETS + 1];
	atomic_uint_fast64_t h_sum_ns;
} histo;

typedef struct method_stats {
	char                *ms_name;  /* owned, immutable once published */
	char                *ms_label; /* escaped label value, owned */
	atomic_uint_fast64_t ms_calls[NNGRPC_STATUS_COUNT];
	atomic_uint_fast64_t ms_bytes_in;
	atomic_uint_fast64_t ms_bytes_out;
	histo                ms_queue;
	histo                ms_run;
} method_stats;

typedef enum { FN_GAUGE, FN_COUNTER } fn_kind;

typedef struct fn_metric {
	const char *f_name; /* borrowed, static */
	const char *f_help; /* borrowed, static */
	fn_kind     f_kind;
	double (*f_fn)(void *);
	void *f_arg;
} fn_metric;

struct nngrpc_metrics {
	method_stats **m_methods;   /* NNGRPC_METRICS_MAX_METHODS slots */
	atomic_int     m_n_methods; /* published with release */
	method_stats   m_unknown;   /* method="unknown" */
	fn_metric      m_fns[NNGRPC_METRICS_MAX_FNS];
	atomic_int     m_n_fns;      /* published with release */
	double         m_start_time; /* process start, Unix seconds */
	char *(*m_text_fn)(void *);  /* families rendered elsewhere */
	void *m_text_arg;
	int   m_first_service_fn; /* m_fns from here on are the service's */
	bool (*m_relay)(void *, double *, size_t);
	void *m_relay_arg;
};

/* Names of the built-in families, which added gauges may not reuse. */
static const char *const builtin_names[] = {
	"nngrpc_calls_total",
	"nngrpc_call_queue_seconds",
	"nngrpc_call_run_seconds",
	"nngrpc_request_bytes_total",
	"nngrpc_response_bytes_total",
	"process_resident_memory_bytes",
	"process_virtual_memory_bytes",
	"process_cpu_seconds_total",
	"process_open_fds",
	"process_start_time_seconds",
};

/* ---- helpers ------------------------------------------------------------ */

/* Returns new: a label value with \, " and newline escaped, or NULL. */
static char *
escape_label(const char *s)
{
	size_t n = 0;
	char  *out;
	char  *p;

	for (const char *q = s; *q != '\0'; q++) {
		n += (*q == '\\' || *q == '"' || *q == '\n') ? 2 : 1;
	}
	if ((out = malloc(n + 1)) == NULL) {
		return (NULL);
	}
	p = out;
	for (const char *q = s; *q != '\0'; q++) {
		if (*q == '\\' || *q == '"') {
			*p++ = '\\';
			*p++ = *q;
		} else if (*q == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else {
			*p++ = *q;
		}
	}
	*p = '\0';
	return (out);
}

static bool
valid_metric_name(const char *name)
{
	if (name == NULL || name[0] == '\0'
	    || (name[0] >= '0' && name[0] <= '9')) {
		return (false);
	}
	for (const char *p = name; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		        || (c >= '0' && c <= '9') || c == '_' || c == ':')) {
			return (false);
		}
	}
	return (true);
}

static void
method_stats_free(method_stats *ms)
{
	if (ms != NULL) {
		free(ms->ms_name);
		free(ms->ms_label);
		free(ms);
	}
}

/* Reads the process start time from /proc (like Prometheus' Go client:
 * starttime of /proc/self/stat plus btime of /proc/stat). Returns false
 * when /proc does not say. */
static bool
proc_start_time(double *startp)
{
	char               buf[1024];
	FILE              *f;
	size_t             n;
	char              *p;
	unsigned long long ticks = 0;
	unsigned long long btime = 0;
	long               hz;
	char               line[256];
	bool               found = false;

	if ((f = fopen("/proc/self/stat", "r")) == NULL) {
		return (false);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Field 2 (comm) may hold spaces and parentheses: skip to the last
	 * ')'; field 3 follows, starttime is field 22. */
	if ((p = strrchr(buf, ')')) == NULL) {
		return (false);
	}
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (p == NULL) {
			return (false);
		}
	}
	ticks = strtoull(p + 1, NULL, 10);

	if ((f = fopen("/proc/stat", "r")) == NULL) {
		return (false);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "btime %llu", &btime) == 1) {
			found = true;
			break;
		}
	}
	fclose(f);
	if (!found || (hz = sysconf(_SC_CLK_TCK)) <= 0) {
		return (false);
	}
	*startp = (double) btime + (double) ticks / (double) hz;
	return (true);
}

/* ---- registration ------------------------------------------------------- */

int
nngrpc_metrics_alloc(nngrpc_metrics **mp)
{
	nngrpc_metrics *m;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		return (NNG_ENOMEM);
	}
	m->m_methods
	    = calloc(NNGRPC_METRICS_MAX_METHODS, sizeof(m->m_methods[0]));
	if (m->m_methods == NULL) {
		free(m);
		return (NNG_ENOMEM);
	}
	/* calloc zeroes the atomics: a valid initial state for C11 atomic
	 * integers on every platform we build for. */
	atomic_init(&m->m_n_methods, 0);
	atomic_init(&m->m_n_fns, 0);
	if (!proc_start_time(&m->m_start_time)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		m->m_start_time
		    = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
	}
	*mp = m;
	return (0);
}

void
nngrpc_metrics_free(nngrpc_metrics *m)
{
	int n;

	if (m == NULL) {
		return;
	}
	n = atomic_load(&m->m_n_methods);
	for (int i = 0; i < n; i++) {
		method_stats_free(m->m_methods[i]);
	}
	free(m->m_methods);
	free(m);
}

int
nngrpc_metrics_find_method(const nngrpc_metrics *m, const char *full_name)
{
	int n;

	if (m == NULL || full_name == NULL) {
		return (-1);
	}
	n = atomic_load_explicit(
	    (atomic_int *) &m->m_n_methods, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		if (strcmp(m->m_methods[i]->ms_name, full_name) == 0) {
			return (i);
		}
	}
	return (-1);
}

int
nngrpc_metrics_add_method(nngrpc_metrics *m, const char *full_name)
{
	method_stats *ms;
	int           n;
	int           i;

	if (m == NULL || full_name == NULL) {
		return (-1);
	}
	if ((i = nngrpc_metrics_find_method(m, full_name)) >= 0) {
		return (i);
	}
	n = atomic_load_explicit(&m->m_n_methods, memory_order_relaxed);
	if (n >= NNGRPC_METRICS_MAX_METHODS) {
		return (-1);
	}
	if ((ms = calloc(1, sizeof(*ms))) == NULL) {
		return (-1);
	}
	if (((ms->ms_name = strdup(full_name)) == NULL)
	    || ((ms->ms_label = escape_label(full_name)) == NULL)) {
		method_stats_free(ms);
		return (-1);
	}
	m->m_methods[n] = ms;
	atomic_store_explicit(&m->m_n_methods, n + 1, memory_order_release);
	return (n);
}

static int
add_fn(nngrpc_metrics *m, fn_kind kind, const char *name, const char *help,
    double (*fn)(void *), void *arg)
{
	int n;

	if (m == NULL || fn == NULL || !valid_metric_name(name)) {
		return (NNG_EINVAL);
	}
	for (size_t i = 0;
	     i < sizeof(builtin_names) / sizeof(builtin_names[0]); i++) {
		if (strcmp(name, builtin_names[i]) == 0) {
			return (NNG_EEXIST);
		}
	}
	n = atomic_load_explicit(&m->m_n_fns, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		if (strcmp(m->m_fns[i].f_name, name) == 0) {
			return (NNG_EEXIST);
		}
	}
	if (n >= NNGRPC_METRICS_MAX_FNS) {
		return (NNG_ENOMEM);
	}
	m->m_fns[n].f_name = name;
	m->m_fns[n].f_help = help != NULL ? help : "";
	m->m_fns[n].f_kind = kind;
	m->m_fns[n].f_fn = fn;
	m->m_fns[n].f_arg = arg;
	atomic_store_explicit(&m->m_n_fns, n + 1, memory_order_release);
	return (0);
}

int
nngrpc_metrics_add_gauge(nngrpc_metrics *m, const char *name, const char *help,
    double (*fn)(void *), void *arg)
{
	return (add_fn(m, FN_GAUGE, name, help, fn, arg));
}

int
nngrpc_metrics_add_counter_fn(nngrpc_metrics *m, const char *name,
    const char *help, double (*fn)(void *), void *arg)
{
	return (add_fn(m, FN_COUNTER, name, help, fn, arg));
}

/* ---- recording ---------------------------------------------------------- */

static void
histo_observe(histo *h, int64_t ns)
{
	size_t i = 0;

	/* Linear: 17 compares at worst, most calls stop in the first few. */
	while (i < N_BUCKETS && ns > bucket_ns[i]) {
		i++;
	}
	atomic_fetch_add_explicit(&h->h_buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(
	    &h->h_sum_ns, (uint_fast64_t) ns, memory_order_relaxed);
}

void
nngrpc_metrics_call_done(nngrpc_metrics *m, int method, int code,
    int64_t queue_ns, int64_t run_ns, size_t bytes_in, size_t bytes_out)
{
	method_stats *ms;

	if (m == NULL) {
		return;
	}
	if (method >= 0
	    && method < atomic_load_explicit(
	           &m->m_n_methods, memory_order_acquire)) {
		ms = m->m_methods[method];
	} else {
		ms = &m->m_unknown;
	}
	if (!nngrpc_status_valid(code)) {
		code = NNGRPC_UNKNOWN;
	}
	atomic_fetch_add_explicit(
	    &ms->ms_calls[code], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(
	    &ms->ms_bytes_in, (uint_fast64_t) bytes_in, memory_order_relaxed);
	atomic_fetch_add_explicit(&ms->ms_bytes_out, (uint_fast64_t) bytes_out,
	    memory_order_relaxed);
	if (queue_ns >= 0) {
		histo_observe(&ms->ms_queue, queue_ns);
	}
	if (run_ns >= 0) {
		histo_observe(&ms->ms_run, run_ns);
	}
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct sbuf {
	char  *sb_buf;
	size_t sb_len;
	size_t sb_cap;
	bool   sb_oom;
} sbuf;

static void sb_printf(sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_printf(sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int     w;

	if (sb->sb_oom) {
		return;
	}
	for (;;) {
		size_t room = sb->sb_cap - sb->sb_len;
		va_start(ap, fmt);
		w = vsnprintf(sb->sb_buf + sb->sb_len, room, fmt, ap);
		va_end(ap);
		if (w < 0) {
			sb->sb_oom = true; /* encoding error: give up */
			return;
		}
		if ((size_t) w < room) {
			sb->sb_len += (size_t) w;
			return;
		}
		size_t cap = sb->sb_cap * 2;
		while (cap - sb->sb_len <= (size_t) w) {
			cap *= 2;
		}
		char *nb = realloc(sb->sb_buf, cap);
		if (nb == NULL) {
			sb->sb_oom = true;
			return;
		}
		sb->sb_buf = nb;
		sb->sb_cap = cap;
	}
}

/* HELP text escaping: backslash and newline. */
static void
sb_help(sbuf *sb, const char *name, const char *type, const char *help)
{
	sb_printf(sb, "# HELP %s ", name);
	for (const char *p = help; *p != '\0'; p++) {
		if (*p == '\\') {
			sb_printf(sb, "\\\\");
		} else if (*p == '\n') {
			sb_printf(sb, "\\n");
		} else {
			sb_printf(sb, "%c", *p);
		}
	}
	sb_printf(sb, "\n# TYPE %s %s\n", name, type);
}

/* A float as Prometheus reads it: the shortest of %.15g/%.17g that
 * round-trips, NaN and +Inf/-Inf spelled its way. */
static void
sb_double(sbuf *sb, double v)
{
	char buf[64];

	if (isnan(v)) {
		sb_printf(sb, "NaN");
		return;
	}
	if (isinf(v)) {
		sb_printf(sb, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v) {
		snprintf(buf, sizeof(buf), "%.17g", v);
	}
	sb_printf(sb, "%s", buf);
}

static uint64_t
ld(atomic_uint_fast64_t *a)
{
	return (atomic_load_explicit(a, memory_order_relaxed));
}

static bool
method_seen(method_stats *ms)
{
	for (int c = 0; c < NNGRPC_STATUS_COUNT; c++) {
		if (ld(&ms->ms_calls[c]) != 0) {
			return (true);
		}
	}
	return (false);
}

static void
render_histo(sbuf *sb, const char *family, const char *label, histo *h)
{
	uint64_t cum = 0;

	for (int i = 0; i < N_BUCKETS; i++) {
		cum += ld(&h->h_buckets[i]);
		sb_printf(sb,
		    "%s_bucket{method=\"%s\",le=\"%s\"} %" PRIu64 "\n", family,
		    label, bucket_le[i], cum);
	}
	cum += ld(&h->h_buckets[N_BUCKETS]);
	sb_printf(sb, "%s_bucket{method=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
	    family, label, cum);
	sb_printf(sb, "%s_sum{method=\"%s\"} %.9f\n", family, label,
	    (double) ld(&h->h_sum_ns) / 1e9);
	sb_printf(
	    sb, "%s_count{method=\"%s\"} %" PRIu64 "\n", family, label, cum);
}

/* Reads resident and virtual size in bytes from /proc/self/statm. */
static bool
proc_memory(double *rssp, double *vszp)
{
	FILE              *f;
	unsigned long long size;
	unsigned long long resident;
	long               page = sysconf(_SC_PAGESIZE);
	int                n;

	if ((f = fopen("/proc/self/statm", "r")) == NULL) {
		return (false);
	}
	n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	if (n != 2 || page <= 0) {
		return (false);
	}
	*vszp = (double) size * (double) page;
	*rssp = (double) resident * (double) page;
	return (true);
}

/* Counts /proc/self/fd entries, not counting the directory's own fd. */
static bool
proc_open_fds(double *fdsp)
{
	DIR           *d;
	struct dirent *e;
	long           n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL) {
		return (false);
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.') {
			n++;
		}
	}
	closedir(d);
	*fdsp = (double) (n > 0 ? n - 1 : 0);
	return (true);
}

static void
render_process(sbuf *sb, const nngrpc_metrics *m)
{
	double        rss;
	double        vsz;
	double        fds;
	struct rusage ru;

	if (proc_memory(&rss, &vsz)) {
		sb_help(sb, "process_resident_memory_bytes", "gauge",
		    "Resident memory size in bytes.");
		sb_printf(sb, "process_resident_memory_bytes %.0f\n", rss);
		sb_help(sb, "process_virtual_memory_bytes", "gauge",
		    "Virtual memory size in bytes.");
		sb_printf(sb, "process_virtual_memory_bytes %.0f\n", vsz);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		double cpu = (double) ru.ru_utime.tv_sec
		    + (double) ru.ru_utime.tv_usec / 1e6
		    + (double) ru.ru_stime.tv_sec
		    + (double) ru.ru_stime.tv_usec / 1e6;
		sb_help(sb, "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds.");
		sb_printf(sb, "process_cpu_seconds_total %.6f\n", cpu);
	}
	if (proc_open_fds(&fds)) {
		sb_help(sb, "process_open_fds", "gauge",
		    "Number of open file descriptors.");
		sb_printf(sb, "process_open_fds %.0f\n", fds);
	}
	sb_help(sb, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.");
	sb_printf(sb, "process_start_time_seconds %.2f\n", m->m_start_time);
}

/* The methods a render shows: the registered ones, then "unknown" once
 * it has seen a call; all[i]'s label is labels[i]. */
typedef struct method_list {
	method_stats **all;
	const char   **labels;
	int            n;
} method_list;

static int
list_methods(nngrpc_metrics *m, method_list *ml)
{
	int n_methods
	    = atomic_load_explicit(&m->m_n_methods, memory_order_acquire);

	ml->n = 0;
	ml->all = malloc(sizeof(*ml->all) * (size_t) (n_methods + 1));
	ml->labels = malloc(sizeof(*ml->labels) * (size_t) (n_methods + 1));
	if (ml->all == NULL || ml->labels == NULL) {
		free(ml->all);
		free(ml->labels);
		return (NNG_ENOMEM);
	}
	for (int i = 0; i < n_methods; i++) {
		ml->all[ml->n] = m->m_methods[i];
		ml->labels[ml->n++] = m->m_methods[i]->ms_label;
	}
	if (method_seen(&m->m_unknown)) {
		ml->all[ml->n] = &m->m_unknown;
		ml->labels[ml->n++] = "unknown";
	}
	return (0);
}

/* nngrpc_calls_total. Every registered method shows code="OK", even at
 * 0, so rate() works from the first scrape; other codes once they
 * happen. */
static void
render_calls(sbuf *sb, const nngrpc_metrics *m, const method_list *ml)
{
	sb_help(sb, "nngrpc_calls_total", "counter",
	    "Calls finished, by method and status code.");
	for (int i = 0; i < ml->n; i++) {
		for (int c = 0; c < NNGRPC_STATUS_COUNT; c++) {
			uint64_t v = ld(&ml->all[i]->ms_calls[c]);
			if (v == 0
			    && (c != NNGRPC_OK
			        || ml->all[i] == &m->m_unknown)) {
				continue;
			}
			sb_printf(sb,
			    "nngrpc_calls_total{method=\"%s\",code=\"%s\"} "
			    "%" PRIu64 "\n",
			    ml->labels[i], nngrpc_status_name(c), v);
		}
	}
}

/* The latency histograms and the byte counters, per method. */
static void
render_per_method(sbuf *sb, const method_list *ml)
{
	sb_help(sb, "nngrpc_call_queue_seconds", "histogram",
	    "Time calls waited in the queue for a worker.");
	for (int i = 0; i < ml->n; i++) {
		render_histo(sb, "nngrpc_call_queue_seconds", ml->labels[i],
		    &ml->all[i]->ms_queue);
	}
	sb_help(sb, "nngrpc_call_run_seconds", "histogram",
	    "Time calls ran on a worker.");
	for (int i = 0; i < ml->n; i++) {
		render_histo(sb, "nngrpc_call_run_seconds", ml->labels[i],
		    &ml->all[i]->ms_run);
	}
	sb_help(sb, "nngrpc_request_bytes_total", "counter",
	    "Request envelope bytes received.");
	for (int i = 0; i < ml->n; i++) {
		sb_printf(sb,
		    "nngrpc_request_bytes_total{method=\"%s\"} %" PRIu64 "\n",
		    ml->labels[i], ld(&ml->all[i]->ms_bytes_in));
	}
	sb_help(sb, "nngrpc_response_bytes_total", "counter",
	    "Response envelope bytes sent.");
	for (int i = 0; i < ml->n; i++) {
		sb_printf(sb,
		    "nngrpc_response_bytes_total{method=\"%s\"} %" PRIu64 "\n",
		    ml->labels[i], ld(&ml->all[i]->ms_bytes_out));
	}
}

void
nngrpc_metrics_mark_service_fns(nngrpc_metrics *m)
{
	m->m_first_service_fn = atomic_load(&m->m_n_fns);
}

void
nngrpc_metrics_set_relay(nngrpc_metrics *m,
    bool (*fn)(void *arg, double *values, size_t n), void *arg)
{
	m->m_relay = fn;
	m->m_relay_arg = arg;
}

size_t
nngrpc_metrics_read_service_fns(nngrpc_metrics *m, double *values, size_t n)
{
	int    n_fns = atomic_load_explicit(&m->m_n_fns, memory_order_acquire);
	size_t have = (size_t) (n_fns - m->m_first_service_fn);

	for (size_t i = 0; i < have && i < n; i++) {
		const fn_metric *f
		    = &m->m_fns[m->m_first_service_fn + (int) i];
		values[i] = f->f_fn(f->f_arg);
	}
	return (have);
}

/* The gauges and counters read from elsewhere: the service's through the
 * relay when there is one. */
static void
render_fns(sbuf *sb, const nngrpc_metrics *m)
{
	int    n_fns = atomic_load_explicit(&m->m_n_fns, memory_order_acquire);
	int    first = m->m_first_service_fn;
	double relayed[NNGRPC_METRICS_MAX_FNS];
	bool   relay = m->m_relay != NULL && n_fns > first
	    && m->m_relay(m->m_relay_arg, relayed, (size_t) (n_fns - first));

	for (int i = 0; i < n_fns; i++) {
		const fn_metric *f = &m->m_fns[i];
		sb_help(sb, f->f_name,
		    f->f_kind == FN_GAUGE ? "gauge" : "counter", f->f_help);
		sb_printf(sb, "%s ", f->f_name);
		sb_double(sb,
		    relay && i >= first ? relayed[i - first]
		                        : f->f_fn(f->f_arg));
		sb_printf(sb, "\n");
	}
}

int
nngrpc_metrics_add_text(nngrpc_metrics *m, char *(*fn)(void *), void *arg)
{
	if (m->m_text_fn != NULL) {
		return (NNG_EBUSY);
	}
	m->m_text_fn = fn;
	m->m_text_arg = arg;
	return (0);
}

/* The families rendered elsewhere. */
static void
render_text(sbuf *sb, const nngrpc_metrics *m)
{
	char *text;

	if (m->m_text_fn != NULL
	    && (text = m->m_text_fn(m->m_text_arg)) != NULL) {
		sb_printf(sb, "%s", text);
		free(text);
	}
}

int
nngrpc_metrics_render(nngrpc_metrics *m, char **textp, size_t *lenp)
{
	sbuf        sb = { 0 };
	method_list ml;

	sb.sb_cap = 8192;
	if ((sb.sb_buf = malloc(sb.sb_cap)) == NULL
	    || list_methods(m, &ml) != 0) {
		free(sb.sb_buf);
		return (NNG_ENOMEM);
	}
	render_calls(&sb, m, &ml);
	render_per_method(&sb, &ml);
	render_fns(&sb, m);
	render_text(&sb, m);
	render_process(&sb, m);
	free(ml.all);
	free(ml.labels);
	if (sb.sb_oom) {
		free(sb.sb_buf);
		return (NNG_ENOMEM);
	}
	*textp = sb.sb_buf;
	*lenp = sb.sb_len;
	return (0);
}
