/*
 * Logging to stderr, in text or JSON lines, with an access log.
 *
 * DESIGN
 * ------
 * Every line is built in a buffer on the caller's stack and written with
 * one write(2): lines from different threads never interleave, and there
 * is no lock to take on a hot path. The settings (level, format, access
 * mode and sampling threshold) are atomics that main sets and any thread
 * reads. The request id and the sampling PRNG state are thread-local, so
 * a worker tags its own lines and draws its own samples without sharing
 * anything.
 *
 * A line is bounded: the formatted message to MSG_MAX bytes and each field
 * to FIELD_MAX, and the line buffer holds their worst-case escaped size,
 * so escaping never has to cut a line (or a JSON object) short.
 *
 * Escaping keeps one event on one line in both formats. JSON strings are
 * escaped per RFC 8259 (quote, backslash, control characters; invalid
 * UTF-8 becomes U+FFFD so the output stays valid JSON). In text, control
 * characters in the message become \n, \t, \xNN, and a field value is
 * written bare when it is plain printable ASCII without spaces, quotes or
 * backslashes, otherwise quoted and escaped.
 *
 * Threads: any thread, including NNG's callback threads (nothing here
 * blocks except the write to stderr).
 */
#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nngrpc/status.h>

/* Longest formatted message, and longest client-supplied field (method,
 * peer), in raw bytes. */
#define MSG_MAX   2048
#define FIELD_MAX 256
/* Worst case of a JSON escape is 6 bytes per input byte (\u00XX); the
 * rest of a line (time, level, keys, numbers) fits in 512. */
#define LOG_LINE_MAX                                                          \
	(6 * (MSG_MAX + 3 * FIELD_MAX + NNGRPC_LOG_MAX_REQUEST_ID) + 512)

static atomic_int log_level = NNGRPC_LOG_INFO;
static atomic_int log_format = NNGRPC_LOG_TEXT;
static atomic_int log_access = NNGRPC_ACCESS_OFF;
/* A call is sampled when its 53-bit random draw is below this: 0 never,
 * 2^53 always. */
static _Atomic uint64_t access_threshold = 0;

static _Thread_local char     tl_request_id[NNGRPC_LOG_MAX_REQUEST_ID + 1];
static _Thread_local bool     tl_has_request_id;
static _Thread_local uint64_t tl_rng;

static const char *const level_names[] = {
	[NNGRPC_LOG_ERROR] = "error",
	[NNGRPC_LOG_WARN] = "warn",
	[NNGRPC_LOG_INFO] = "info",
	[NNGRPC_LOG_DEBUG] = "debug",
};

static const char *const format_names[] = {
	[NNGRPC_LOG_TEXT] = "text",
	[NNGRPC_LOG_JSON] = "json",
};

static const char *const access_names[] = {
	[NNGRPC_ACCESS_OFF] = "off",
	[NNGRPC_ACCESS_ALL] = "all",
	[NNGRPC_ACCESS_SAMPLED] = "sampled",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool
parse_name(const char *name, const char *const *names, size_t n, int *outp)
{
	if (name == NULL) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(name, names[i]) == 0) {
			*outp = (int) i;
			return (true);
		}
	}
	return (false);
}

/* ---- settings ----------------------------------------------------------- */

void
nngrpc_log_set_level(nngrpc_log_level level)
{
	atomic_store(&log_level, (int) level);
}

bool
nngrpc_log_parse_level(const char *name, nngrpc_log_level *levelp)
{
	int v;
	if (!parse_name(name, level_names, COUNT(level_names), &v)) {
		return (false);
	}
	*levelp = (nngrpc_log_level) v;
	return (true);
}

bool
nngrpc_log_enabled(nngrpc_log_level level)
{
	return ((int) level <= atomic_load(&log_level));
}

void
nngrpc_log_set_format(nngrpc_log_format format)
{
	atomic_store(&log_format, (int) format);
}

bool
nngrpc_log_parse_format(const char *name, nngrpc_log_format *formatp)
{
	int v;
	if (!parse_name(name, format_names, COUNT(format_names), &v)) {
		return (false);
	}
	*formatp = (nngrpc_log_format) v;
	return (true);
}

void
nngrpc_log_set_access(nngrpc_access_mode mode, double sample_rate)
{
	uint64_t threshold;

	if (!(sample_rate > 0.0)) { /* also NaN */
		threshold = 0;
	} else if (sample_rate >= 1.0) {
		threshold = UINT64_C(1) << 53;
	} else {
		threshold = (uint64_t) ldexp(sample_rate, 53);
	}
	atomic_store(&access_threshold, threshold);
	atomic_store(&log_access, (int) mode);
}

bool
nngrpc_log_parse_access(const char *name, nngrpc_access_mode *modep)
{
	int v;
	if (!parse_name(name, access_names, COUNT(access_names), &v)) {
		return (false);
	}
	*modep = (nngrpc_access_mode) v;
	return (true);
}

void
nngrpc_log_set_request_id(const char *id)
{
	size_t n;

	if (id == NULL || id[0] == '\0') {
		tl_has_request_id = false;
		tl_request_id[0] = '\0';
		return;
	}
	n = strnlen(id, NNGRPC_LOG_MAX_REQUEST_ID);
	memcpy(tl_request_id, id, n);
	tl_request_id[n] = '\0';
	tl_has_request_id = true;
}

const char *
nngrpc_log_request_id(void)
{
	return (tl_has_request_id ? tl_request_id : NULL);
}

/* ---- line building ------------------------------------------------------ */

typedef struct line {
	char   l_buf[LOG_LINE_MAX];
	size_t l_len;
	bool   l_json;
} line;

/* Appends raw bytes; a line never overflows by construction, but stay
 * safe if a bound above is ever wrong. */
static void
put(line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->l_buf) - 1 - l->l_len; /* keep the '\n' */
	if (n > room) {
		n = room;
	}
	memcpy(l->l_buf + l->l_len, s, n);
	l->l_len += n;
}

static void putf(line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
putf(line *l, const char *fmt, ...)
{
	char    tmp[128];
	va_list ap;
	int     w;

	va_start(ap, fmt);
	w = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (w > 0) {
		put(l, tmp,
		    (size_t) w < sizeof(tmp) ? (size_t) w : sizeof(tmp) - 1);
	}
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it
 * is not one (bad lead byte, bad or missing continuation, overlong form,
 * surrogate, above U+10FFFF). */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t   len;
	uint32_t cp;

	if (s[0] < 0x80) {
		return (1);
	} else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return (0);
	}
	if (len > n) {
		return (0);
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			return (0);
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
	    || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
		return (0);
	}
	return (len);
}

/* A JSON string, quotes included, of at most n bytes of s. */
static void
put_json_str(line *l, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t               i = 0;

	put(l, "\"", 1);
	while (i < n) {
		unsigned char c = p[i];
		size_t        k;
		switch (c) {
		case '"':
			put(l, "\\\"", 2);
			break;
		case '\\':
			put(l, "\\\\", 2);
			break;
		case '\n':
			put(l, "\\n", 2);
			break;
		case '\r':
			put(l, "\\r", 2);
			break;
		case '\t':
			put(l, "\\t", 2);
			break;
		case '\b':
			put(l, "\\b", 2);
			break;
		case '\f':
			put(l, "\\f", 2);
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				putf(l, "\\u%04x", c);
			} else if (c < 0x80) {
				put(l, (const char *) &p[i], 1);
			} else if ((k = utf8_len(p + i, n - i)) == 0) {
				put(l, "\\ufffd", 6);
			} else {
				put(l, (const char *) &p[i], k);
				i += k;
				continue;
			}
			break;
		}
		i++;
	}
	put(l, "\"", 1);
}

/* Text: control characters as \n, \r, \t or \xNN; everything else as is.
 * With quote, also escapes '"' and '\\' (for a quoted field value). */
static void
put_text(line *l, const char *s, size_t n, bool quote)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];
		if (c == '\n') {
			put(l, "\\n", 2);
		} else if (c == '\r') {
			put(l, "\\r", 2);
		} else if (c == '\t') {
			put(l, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f) {
			putf(l, "\\x%02x", c);
		} else if (quote && (c == '"' || c == '\\')) {
			put(l, "\\", 1);
			put(l, (const char *) &c, 1);
		} else {
			put(l, (const char *) &c, 1);
		}
	}
}

/* A string field: ,"key":"value" (JSON) or " key=value" (text; quoted when
 * the value is empty or holds anything but plain printable ASCII without
 * spaces, quotes or backslashes). At most max bytes of value. */
static void
put_field(line *l, const char *key, const char *value, size_t max)
{
	size_t n = strnlen(value, max);

	if (l->l_json) {
		putf(l, ",\"%s\":", key);
		put_json_str(l, value, n);
		return;
	}
	bool bare = n > 0;
	for (size_t i = 0; i < n && bare; i++) {
		unsigned char c = (unsigned char) value[i];
		bare = c > 0x20 && c < 0x7f && c != '"' && c != '\\';
	}
	putf(l, " %s=", key);
	if (bare) {
		put(l, value, n);
	} else {
		put(l, "\"", 1);
		put_text(l, value, n, true);
		put(l, "\"", 1);
	}
}

static void
put_int_field(line *l, const char *key, int64_t v)
{
	putf(l, l->l_json ? ",\"%s\":%lld" : " %s=%lld", key, (long long) v);
}

/* Starts a line: the time, the level and the message. */
static void
line_start(line *l, nngrpc_log_level level, const char *msg, size_t n)
{
	struct timeval tv;
	struct tm      tm;
	char           ts[64];
	size_t         tn;

	l->l_len = 0;
	l->l_json = atomic_load(&log_format) == NNGRPC_LOG_JSON;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	tn = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(
	    ts + tn, sizeof(ts) - tn, ".%03dZ", (int) (tv.tv_usec / 1000));
	if (l->l_json) {
		putf(l, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
		    level_names[level]);
		put_json_str(l, msg, n);
	} else {
		putf(l, "%s %s ", ts, level_names[level]);
		put_text(l, msg, n, false);
	}
}

static void
line_end(line *l)
{
	if (l->l_json) {
		put(l, "}", 1);
	}
	l->l_buf[l->l_len++] = '\n'; /* put() always leaves room */
	/* One write per line; a short write to stderr is not worth a retry. */
	(void) !write(STDERR_FILENO, l->l_buf, l->l_len);
}

void
nngrpc_log(nngrpc_log_level level, const char *fmt, ...)
{
	line    l;
	char    msg[MSG_MAX + 1];
	va_list ap;
	int     w;
	size_t  n;

	if (!nngrpc_log_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	w = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = w < 0 ? 0 : ((size_t) w > MSG_MAX ? MSG_MAX : (size_t) w);
	line_start(&l, level, msg, n);
	if (tl_has_request_id) {
		put_field(&l, "request_id", tl_request_id,
		    NNGRPC_LOG_MAX_REQUEST_ID);
	}
	line_end(&l);
}

/* ---- access log --------------------------------------------------------- */

/* xorshift64*: a cheap PRNG, one per thread, seeded on first use from the
 * time and the address of the thread's own state. */
static uint64_t
rng_next(void)
{
	uint64_t x = tl_rng;

	if (x == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 32)
		    ^ (uint64_t) (uintptr_t) &tl_rng;
		x = (x ^ (x >> 31)) * UINT64_C(0x9e3779b97f4a7c15);
		if (x == 0) {
			x = UINT64_C(0x2545f4914f6cdd1d);
		}
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	tl_rng = x;
	return (x * UINT64_C(0x2545f4914f6cdd1d));
}

static bool
access_wanted(void)
{
	switch (atomic_load_explicit(&log_access, memory_order_relaxed)) {
	case NNGRPC_ACCESS_ALL:
		return (true);
	case NNGRPC_ACCESS_SAMPLED:
		return ((rng_next() >> 11) < atomic_load_explicit(
		            &access_threshold, memory_order_relaxed));
	default:
		return (false);
	}
}

bool
nngrpc_log_access_wanted(void)
{
	return (access_wanted());
}

void
nngrpc_log_access(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer,
    const char *trace_id)
{
	if (access_wanted()) {
		nngrpc_log_access_line(method, code, queue_us, run_us,
		    request_id, peer, trace_id);
	}
}

void
nngrpc_log_access_line(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer,
    const char *trace_id)
{
	line        l;
	const char *status;

	if (request_id == NULL && tl_has_request_id) {
		request_id = tl_request_id;
	}
	status = nngrpc_status_name(code);
	line_start(&l, NNGRPC_LOG_INFO, "access", 6);
	put_field(&l, "method", method != NULL ? method : "", FIELD_MAX);
	put_field(
	    &l, "status", status != NULL ? status : "INVALID", FIELD_MAX);
	put_int_field(&l, "code", code);
	if (queue_us >= 0) {
		put_int_field(&l, "queue_us", queue_us);
	}
	if (run_us >= 0) {
		put_int_field(&l, "run_us", run_us);
	}
	if (request_id != NULL && request_id[0] != '\0') {
		put_field(
		    &l, "request_id", request_id, NNGRPC_LOG_MAX_REQUEST_ID);
	}
	if (peer != NULL) {
		put_field(&l, "peer", peer, FIELD_MAX);
	}
	if (trace_id != NULL) {
		put_field(&l, "trace_id", trace_id, FIELD_MAX);
	}
	line_end(&l);
}
