/* Logging: text and JSON lines on stderr, escaping, the per-thread request
 * id and the access log. stderr is captured by putting a temporary file on
 * fd 2 around each logging call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nngrpc/status.h>

#include "log.h"

/* ---- capturing fd 2 ----------------------------------------------------- */

static FILE *cap_file;
static int   cap_saved = -1;

static void
cap_begin(void)
{
	fflush(stderr);
	assert_non_null(cap_file = tmpfile());
	assert_true((cap_saved = dup(STDERR_FILENO)) >= 0);
	assert_true(dup2(fileno(cap_file), STDERR_FILENO) >= 0);
}

/* Returns new: everything written to fd 2 since cap_begin(), NUL-ended. */
static char *
cap_end(void)
{
	off_t size;
	char *buf;

	dup2(cap_saved, STDERR_FILENO);
	close(cap_saved);
	cap_saved = -1;
	size = lseek(fileno(cap_file), 0, SEEK_END);
	assert_true(size >= 0);
	assert_non_null(buf = malloc((size_t) size + 1));
	assert_int_equal(pread(fileno(cap_file), buf, (size_t) size, 0), size);
	buf[size] = '\0';
	fclose(cap_file);
	cap_file = NULL;
	return (buf);
}

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s != '\0'; s++) {
		n += *s == '\n';
	}
	return (n);
}

static void
assert_matches(const char *s, const char *pattern)
{
	regex_t re;
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	int rv = regexec(&re, s, 0, NULL, 0);
	regfree(&re);
	if (rv != 0) {
		fail_msg("\"%s\" does not match /%s/", s, pattern);
	}
}

/* ---- a strict parser for one flat JSON object per line ------------------ */

typedef struct kv {
	char   key[64];
	char   val[16384]; /* unescaped string, or the number's text */
	size_t len;
	bool   is_str;
} kv;

static void
utf8_put(char *out, size_t *np, unsigned cp)
{
	if (cp < 0x80) {
		out[(*np)++] = (char) cp;
	} else if (cp < 0x800) {
		out[(*np)++] = (char) (0xc0 | (cp >> 6));
		out[(*np)++] = (char) (0x80 | (cp & 0x3f));
	} else {
		out[(*np)++] = (char) (0xe0 | (cp >> 12));
		out[(*np)++] = (char) (0x80 | ((cp >> 6) & 0x3f));
		out[(*np)++] = (char) (0x80 | (cp & 0x3f));
	}
}

/* Parses a JSON string at *sp into out; false when it is not valid JSON
 * (raw control characters, bad escapes, no closing quote). */
static bool
parse_str(const char **sp, char *out, size_t cap, size_t *lenp)
{
	const char *s = *sp;
	size_t      n = 0;

	if (*s++ != '"') {
		return (false);
	}
	while (*s != '"') {
		unsigned char c = (unsigned char) *s;
		if (c == '\0' || c < 0x20 || n + 4 > cap) {
			return (false);
		}
		if (c != '\\') {
			out[n++] = (char) c;
			s++;
			continue;
		}
		s++;
		switch (*s) {
		case '"':
		case '\\':
		case '/':
			out[n++] = *s;
			break;
		case 'n':
			out[n++] = '\n';
			break;
		case 'r':
			out[n++] = '\r';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case 'b':
			out[n++] = '\b';
			break;
		case 'f':
			out[n++] = '\f';
			break;
		case 'u': {
			unsigned cp;
			char     hex[5] = { 0 };
			memcpy(hex, s + 1, 4);
			if (strspn(hex, "0123456789abcdefABCDEF") != 4) {
				return (false);
			}
			cp = (unsigned) strtoul(hex, NULL, 16);
			utf8_put(out, &n, cp);
			s += 4;
			break;
		}
		default:
			return (false);
		}
		s++;
	}
	out[n] = '\0';
	*lenp = n;
	*sp = s + 1;
	return (true);
}

/* Parses {"k":"v","n":12,...} spanning exactly len bytes. Returns the
 * number of pairs, or -1 when it is not such an object. */
static int
parse_json_line(const char *line, size_t len, kv *out, int max)
{
	char        copy[65536];
	const char *s;
	int         n = 0;

	assert_true(len < sizeof(copy));
	memcpy(copy, line, len);
	copy[len] = '\0';
	s = copy;
	if (*s++ != '{') {
		return (-1);
	}
	while (*s != '}') {
		size_t kl;
		if (n > 0 && *s++ != ',') {
			return (-1);
		}
		if (n >= max
		    || !parse_str(&s, out[n].key, sizeof(out[n].key), &kl)
		    || *s++ != ':') {
			return (-1);
		}
		if (*s == '"') {
			out[n].is_str = true;
			if (!parse_str(&s, out[n].val, sizeof(out[n].val),
			        &out[n].len)) {
				return (-1);
			}
		} else {
			size_t vl = strspn(s, "-0123456789");
			if (vl == 0 || vl >= sizeof(out[n].val)) {
				return (-1);
			}
			memcpy(out[n].val, s, vl);
			out[n].val[vl] = '\0';
			out[n].len = vl;
			out[n].is_str = false;
			s += vl;
		}
		n++;
	}
	return (s[1] == '\0' ? n : -1);
}

static const kv *
find(const kv *kvs, int n, const char *key)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(kvs[i].key, key) == 0) {
			return (&kvs[i]);
		}
	}
	return (NULL);
}

static kv kvs[16];

/* Parses the only line of out (which must end with one newline). */
static int
parse_only_line(const char *out)
{
	size_t len = strlen(out);
	assert_int_equal(count_lines(out), 1);
	assert_true(len > 0 && out[len - 1] == '\n');
	int n = parse_json_line(out, len - 1, kvs, 16);
	if (n < 0) {
		fail_msg("not a JSON object: %s", out);
	}
	return (n);
}

static int
setup(void **state)
{
	(void) state;
	nngrpc_log_set_level(NNGRPC_LOG_INFO);
	nngrpc_log_set_format(NNGRPC_LOG_TEXT);
	nngrpc_log_set_access(NNGRPC_ACCESS_OFF, 0.0);
	nngrpc_log_set_request_id(NULL);
	return (0);
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* ---- tests -------------------------------------------------------------- */

static void
test_parse(void **state)
{
	nngrpc_log_format  f = NNGRPC_LOG_TEXT;
	nngrpc_log_level   l = NNGRPC_LOG_INFO;
	nngrpc_access_mode a = NNGRPC_ACCESS_OFF;
	(void) state;

	assert_true(nngrpc_log_parse_format("json", &f));
	assert_int_equal(f, NNGRPC_LOG_JSON);
	assert_true(nngrpc_log_parse_format("text", &f));
	assert_int_equal(f, NNGRPC_LOG_TEXT);
	f = NNGRPC_LOG_JSON;
	assert_false(nngrpc_log_parse_format("JSON ", &f));
	assert_false(nngrpc_log_parse_format("", &f));
	assert_false(nngrpc_log_parse_format(NULL, &f));
	assert_int_equal(f, NNGRPC_LOG_JSON); /* untouched */

	assert_true(nngrpc_log_parse_level("debug", &l));
	assert_int_equal(l, NNGRPC_LOG_DEBUG);
	assert_false(nngrpc_log_parse_level("verbose", &l));
	assert_int_equal(l, NNGRPC_LOG_DEBUG);

	assert_true(nngrpc_log_parse_access("sampled", &a));
	assert_int_equal(a, NNGRPC_ACCESS_SAMPLED);
	assert_true(nngrpc_log_parse_access("all", &a));
	assert_int_equal(a, NNGRPC_ACCESS_ALL);
	assert_true(nngrpc_log_parse_access("off", &a));
	assert_int_equal(a, NNGRPC_ACCESS_OFF);
	assert_false(nngrpc_log_parse_access("on", &a));
}

static void
test_text_format(void **state)
{
	(void) state;
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "hello %d", 42);
	nngrpc_log(NNGRPC_LOG_DEBUG, "hidden");
	nngrpc_log(NNGRPC_LOG_ERROR, "listening on %s", "tcp://127.0.0.1:1");
	char *out = cap_end();
	assert_int_equal(count_lines(out), 2);
	assert_matches(out,
	    "^" TS " info hello 42\n" TS
	    " error listening on tcp://127\\.0\\.0\\.1:1\n$");
	free(out);

	nngrpc_log_set_level(NNGRPC_LOG_DEBUG);
	assert_true(nngrpc_log_enabled(NNGRPC_LOG_DEBUG));
	cap_begin();
	nngrpc_log(NNGRPC_LOG_DEBUG, "shown");
	out = cap_end();
	assert_matches(out, "^" TS " debug shown\n$");
	free(out);
}

static void
test_text_escaping(void **state)
{
	(void) state;
	cap_begin();
	nngrpc_log(NNGRPC_LOG_WARN, "a\nb\tc\rd\001e \"q\" \\ f\x7f");
	char *out = cap_end();
	/* One line; control characters escaped, quotes left as they are. */
	assert_int_equal(count_lines(out), 1);
	const char *msg = strstr(out, " warn ");
	assert_non_null(msg);
	assert_string_equal(msg + 6, "a\\nb\\tc\\rd\\x01e \"q\" \\ f\\x7f\n");
	free(out);
}

static void
test_json_format(void **state)
{
	(void) state;
	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "listening on %s", "tcp://0.0.0.0:5555");
	char *out = cap_end();
	assert_matches(out,
	    "^\\{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"listening on "
	    "tcp://0\\.0\\.0\\.0:5555\"\\}\n$");
	int n = parse_only_line(out);
	assert_int_equal(n, 3);
	assert_string_equal(find(kvs, n, "level")->val, "info");
	free(out);
}

static void
test_json_escaping(void **state)
{
	(void) state;
	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	/* quote, backslash, newline, tab, CR, backspace, form feed, other
	 * controls, DEL, valid UTF-8, an invalid byte, a cut sequence */
	const char *raw = "q\"b\\n\nt\tr\rb\bf\f\001\037 del\x7f "
	                  "caf\xc3\xa9 \xe2\x82\xac bad\xff cut\xc3";
	cap_begin();
	nngrpc_log(NNGRPC_LOG_ERROR, "%s", raw);
	char *out = cap_end();
	assert_non_null(strstr(out,
	    "\"msg\":\"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\f\\u0001\\u001f "
	    "del\\u007f caf\xc3\xa9 \xe2\x82\xac bad\\ufffd cut\\ufffd\"}"));
	int       n = parse_only_line(out);
	const kv *msg = find(kvs, n, "msg");
	assert_non_null(msg);
	/* Round trip: what a JSON reader gets back is the message, with the
	 * invalid bytes replaced by U+FFFD. */
	assert_string_equal(msg->val,
	    "q\"b\\n\nt\tr\rb\bf\f\001\037 del\x7f "
	    "caf\xc3\xa9 \xe2\x82\xac bad\xef\xbf\xbd cut\xef\xbf\xbd");
	free(out);
}

static void
test_long_message(void **state)
{
	char big[5001];
	(void) state;

	memset(big, '"', sizeof(big) - 1); /* each needs escaping */
	big[sizeof(big) - 1] = '\0';
	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	nngrpc_log_set_request_id("rid");
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "%s", big);
	char *out = cap_end();
	int   n = parse_only_line(out);
	/* Truncated to 2048 bytes, still valid JSON, request id kept. */
	assert_int_equal(find(kvs, n, "msg")->len, 2048);
	assert_string_equal(find(kvs, n, "request_id")->val, "rid");
	free(out);

	nngrpc_log_set_format(NNGRPC_LOG_TEXT);
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "%s", big);
	out = cap_end();
	assert_int_equal(count_lines(out), 1);
	assert_non_null(strstr(out, "\"\"\" request_id=rid\n"));
	free(out);
	nngrpc_log_set_request_id(NULL);
}

static void *
other_thread_logs(void *arg)
{
	(void) arg;
	assert_null(nngrpc_log_request_id());
	nngrpc_log(NNGRPC_LOG_INFO, "from another thread");
	return (NULL);
}

static void
test_request_id(void **state)
{
	pthread_t th;
	char      long_id[300];
	(void) state;

	nngrpc_log_set_request_id("req-1");
	assert_string_equal(nngrpc_log_request_id(), "req-1");
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "working");
	pthread_create(&th, NULL, other_thread_logs, NULL);
	pthread_join(th, NULL);
	char *out = cap_end();
	assert_matches(out,
	    "^" TS " info working request_id=req-1\n" TS
	    " info from another thread\n$");
	free(out);

	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "working");
	out = cap_end();
	int n = parse_only_line(out);
	assert_int_equal(n, 4);
	assert_string_equal(find(kvs, n, "request_id")->val, "req-1");
	assert_non_null(strstr(out, ",\"request_id\":\"req-1\"}\n"));
	free(out);

	/* An id with spaces and quotes: quoted in text, escaped in JSON. */
	nngrpc_log_set_request_id("a b\"c\nd");
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "x");
	out = cap_end();
	n = parse_only_line(out);
	assert_string_equal(find(kvs, n, "request_id")->val, "a b\"c\nd");
	free(out);
	nngrpc_log_set_format(NNGRPC_LOG_TEXT);
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "x");
	out = cap_end();
	assert_non_null(strstr(out, " x request_id=\"a b\\\"c\\nd\"\n"));
	free(out);

	/* Truncated to NNGRPC_LOG_MAX_REQUEST_ID. */
	memset(long_id, 'r', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	nngrpc_log_set_request_id(long_id);
	assert_int_equal(
	    strlen(nngrpc_log_request_id()), NNGRPC_LOG_MAX_REQUEST_ID);

	/* Cleared by NULL and by "". */
	nngrpc_log_set_request_id(NULL);
	assert_null(nngrpc_log_request_id());
	nngrpc_log_set_request_id("x");
	nngrpc_log_set_request_id("");
	assert_null(nngrpc_log_request_id());
	cap_begin();
	nngrpc_log(NNGRPC_LOG_INFO, "plain");
	out = cap_end();
	assert_null(strstr(out, "request_id"));
	free(out);
}

static void
test_access_off_by_default(void **state)
{
	(void) state;
	/* No setup: this runs first and sees the library's defaults. */
	cap_begin();
	for (int i = 0; i < 100; i++) {
		nngrpc_log_access(
		    "/a.B/C", 0, 1, 2, "r", "tcp://1.2.3.4:5", NULL);
	}
	char *out = cap_end();
	assert_string_equal(out, "");
	free(out);
}

static void
test_access_all(void **state)
{
	(void) state;
	nngrpc_log_set_access(NNGRPC_ACCESS_ALL, 0.0); /* rate ignored */
	/* The access log has its own switch: the level does not hide it. */
	nngrpc_log_set_level(NNGRPC_LOG_ERROR);
	cap_begin();
	nngrpc_log_access("/hotel.v1.HotelSearch/Search", NNGRPC_NOT_FOUND, 12,
	    340, "r9", "tcp://127.0.0.1:40000", NULL);
	nngrpc_log_access(
	    "/x y", NNGRPC_RESOURCE_EXHAUSTED, -1, -1, NULL, NULL, NULL);
	char *out = cap_end();
	assert_matches(out,
	    "^" TS " info access method=/hotel\\.v1\\.HotelSearch/Search "
	    "status=NOT_FOUND code=5 queue_us=12 run_us=340 request_id=r9 "
	    "peer=tcp://127\\.0\\.0\\.1:40000\n" TS
	    " info access method=\"/x y\" status=RESOURCE_EXHAUSTED "
	    "code=8\n$");
	free(out);

	/* JSON, and the thread's request id when none is given. */
	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	nngrpc_log_set_request_id("tl-7");
	cap_begin();
	nngrpc_log_access(
	    "/a.B/\"C\"", NNGRPC_OK, 0, 5, NULL, "ipc:///tmp/s", NULL);
	out = cap_end();
	int n = parse_only_line(out);
	assert_int_equal(n, 10);
	assert_string_equal(find(kvs, n, "msg")->val, "access");
	assert_string_equal(find(kvs, n, "level")->val, "info");
	assert_string_equal(find(kvs, n, "method")->val, "/a.B/\"C\"");
	assert_string_equal(find(kvs, n, "status")->val, "OK");
	assert_false(find(kvs, n, "code")->is_str);
	assert_string_equal(find(kvs, n, "code")->val, "0");
	assert_string_equal(find(kvs, n, "queue_us")->val, "0");
	assert_string_equal(find(kvs, n, "run_us")->val, "5");
	assert_string_equal(find(kvs, n, "request_id")->val, "tl-7");
	assert_string_equal(find(kvs, n, "peer")->val, "ipc:///tmp/s");
	free(out);

	/* An explicit id wins and is not written twice; a code that is not
	 * a status is still logged. */
	cap_begin();
	nngrpc_log_access("/m", 99, -1, 1, "explicit", NULL, NULL);
	out = cap_end();
	n = parse_only_line(out);
	assert_string_equal(find(kvs, n, "request_id")->val, "explicit");
	assert_string_equal(find(kvs, n, "status")->val, "INVALID");
	assert_null(find(kvs, n, "queue_us"));
	assert_null(find(kvs, n, "peer"));
	assert_int_equal(
	    n, 8); /* ts level msg method status code run_us request_id */
	free(out);
	nngrpc_log_set_request_id(NULL);

	/* The caller's W3C trace id, last. */
	cap_begin();
	nngrpc_log_access(
	    "/m", 0, 1, 2, "r", "ipc", "4bf92f3577b34da6a3ce929d0e0e4736");
	out = cap_end();
	n = parse_only_line(out);
	assert_string_equal(
	    find(kvs, n, "trace_id")->val, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_int_equal(n, 11);
	free(out);
}

static int
count_access(nngrpc_access_mode mode, double rate, int calls)
{
	nngrpc_log_set_access(mode, rate);
	cap_begin();
	for (int i = 0; i < calls; i++) {
		nngrpc_log_access("/a.B/C", 0, 1, 2, NULL, NULL, NULL);
	}
	char *out = cap_end();
	int   n = count_lines(out);
	free(out);
	return (n);
}

static void
test_access_sampling(void **state)
{
	(void) state;
	assert_int_equal(count_access(NNGRPC_ACCESS_SAMPLED, 0.0, 2000), 0);
	assert_int_equal(count_access(NNGRPC_ACCESS_SAMPLED, 1.0, 2000), 2000);
	assert_int_equal(count_access(NNGRPC_ACCESS_SAMPLED, -3, 500), 0);
	assert_int_equal(count_access(NNGRPC_ACCESS_SAMPLED, 7, 500), 500);
	assert_int_equal(count_access(NNGRPC_ACCESS_SAMPLED, NAN, 500), 0);
	assert_int_equal(count_access(NNGRPC_ACCESS_OFF, 1.0, 500), 0);
	assert_int_equal(count_access(NNGRPC_ACCESS_ALL, 0.0, 500), 500);
	/* A quarter of 4000: mean 1000, standard deviation ~27. */
	int n = count_access(NNGRPC_ACCESS_SAMPLED, 0.25, 4000);
	if (n < 800 || n > 1200) {
		fail_msg("sampled 0.25 logged %d of 4000", n);
	}
}

#define N_THREADS 4
#define N_LINES   500

static void *
spam(void *arg)
{
	char id[32];
	snprintf(id, sizeof(id), "t%d", (int) (intptr_t) arg);
	nngrpc_log_set_request_id(id);
	for (int i = 0; i < N_LINES; i++) {
		nngrpc_log(NNGRPC_LOG_INFO, "line %d \"of\" %s", i, id);
		nngrpc_log_access("/a.B/C", 0, i, i, NULL, "tcp://h:1", NULL);
	}
	return (NULL);
}

static void
test_concurrent_lines(void **state)
{
	pthread_t th[N_THREADS];
	static kv lkv[16];
	(void) state;

	nngrpc_log_set_format(NNGRPC_LOG_JSON);
	nngrpc_log_set_access(NNGRPC_ACCESS_ALL, 1.0);
	cap_begin();
	for (int i = 0; i < N_THREADS; i++) {
		pthread_create(&th[i], NULL, spam, (void *) (intptr_t) i);
	}
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(th[i], NULL);
	}
	char *out = cap_end();
	assert_int_equal(count_lines(out), N_THREADS * N_LINES * 2);
	/* Every line is a whole JSON object carrying its thread's id. */
	for (char *p = out, *eol; *p != '\0'; p = eol + 1) {
		eol = strchr(p, '\n');
		int n = parse_json_line(p, (size_t) (eol - p), lkv, 16);
		assert_true(n > 0);
		const kv *msg = find(lkv, n, "msg");
		const kv *rid = find(lkv, n, "request_id");
		assert_non_null(msg);
		assert_non_null(rid);
		if (strcmp(msg->val, "access") != 0) {
			assert_non_null(strstr(msg->val, rid->val));
		}
	}
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_access_off_by_default),
		cmocka_unit_test_setup(test_parse, setup),
		cmocka_unit_test_setup(test_text_format, setup),
		cmocka_unit_test_setup(test_text_escaping, setup),
		cmocka_unit_test_setup(test_json_format, setup),
		cmocka_unit_test_setup(test_json_escaping, setup),
		cmocka_unit_test_setup(test_long_message, setup),
		cmocka_unit_test_setup(test_request_id, setup),
		cmocka_unit_test_setup(test_access_all, setup),
		cmocka_unit_test_setup(test_access_sampling, setup),
		cmocka_unit_test_setup(test_concurrent_lines, setup),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
