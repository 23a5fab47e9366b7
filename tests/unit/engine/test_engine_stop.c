/*
 * Stopping: a cancel or a deadline ends queries and dataset builds with
 * HOTEL_ECANCELED or HOTEL_EDEADLINE, no partial result, nothing leaked
 * (the ASan build's leak check), and a reload that stops keeps the old
 * dataset serving.
 *
 * Most tests count the calls to the cancel function: a run that is never
 * cancelled gives the number of stop checks P, then runs cancelled at the
 * k-th check (k = 1..P) stop at each of them in turn, from the check at the
 * start to the last one. The threads test sets an atomic flag from another
 * thread while a build and a stream of queries run (built with TSan too,
 * make engine-tsan).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "engine_test.h"

/* A cancel function that counts its calls and answers "cancelled" from
 * call cancel_at on (0: never). Calls may come from two threads. */
typedef struct countdown {
	atomic_long calls;
	long        cancel_at;
} countdown;

static bool
countdown_cancelled(void *arg)
{
	countdown *c = arg;
	long       k = atomic_fetch_add(&c->calls, 1) + 1;

	return (c->cancel_at > 0 && k >= c->cancel_at);
}

static hotel_stop
countdown_stop(countdown *c, long cancel_at)
{
	hotel_stop stop = { HOTEL_DEADLINE_NONE, countdown_cancelled, c };

	atomic_init(&c->calls, 0);
	c->cancel_at = cancel_at;
	return (stop);
}

/* The cancel points k worth running for P checks: all when there are few,
 * else the first ones, some in the middle and the last ones. */
static bool
worth(long k, long p)
{
	return (p <= 40 || k <= 4 || k >= p - 2 || k % (p / 8) == 0);
}

/* ---- the check itself ----------------------------------------------------
 */

static void
test_stop_check(void **state)
{
	atomic_bool flag;
	hotel_stop  zero = { 0 }, none = { HOTEL_DEADLINE_NONE, NULL, NULL };
	hotel_stop  late = { .deadline_ns = 1 };
	hotel_stop  far = { .deadline_ns = hotel_now_ns() + 3600000000000LL };
	hotel_stop  both = { 1, hotel_stop_flag, &flag };
	(void) state;

	atomic_init(&flag, false);
	assert_int_equal(hotel_stop_check(NULL), HOTEL_OK);
	assert_int_equal(hotel_stop_check(&zero), HOTEL_OK);
	assert_int_equal(hotel_stop_check(&none), HOTEL_OK);
	assert_int_equal(hotel_stop_check(&far), HOTEL_OK);
	assert_int_equal(hotel_stop_check(&late), HOTEL_EDEADLINE);
	/* Late but not cancelled, then both: the cancel wins. */
	assert_int_equal(hotel_stop_check(&both), HOTEL_EDEADLINE);
	atomic_store(&flag, true);
	assert_true(hotel_stop_flag(&flag));
	assert_int_equal(hotel_stop_check(&both), HOTEL_ECANCELED);
	both.deadline_ns = HOTEL_DEADLINE_NONE;
	assert_int_equal(hotel_stop_check(&both), HOTEL_ECANCELED);
	assert_string_equal(hotel_strerror(HOTEL_ECANCELED), "cancelled");
	assert_string_equal(
	    hotel_strerror(HOTEL_EDEADLINE), "deadline exceeded");
}

/* ---- queries ---------------------------------------------------------------
 *
 * 100000 generated hotels (seed 42), enough for each path of a query to
 * visit thousands of documents or postings. */

static hotel_dataset *big;

static int
setup_big(void **state)
{
	(void) state;
	return (hotel_dataset_generate(100000, 42, NULL, &big) == HOTEL_OK
	        ? 0
	        : -1);
}

static int
teardown_big(void **state)
{
	(void) state;
	hotel_dataset_release(big);
	big = NULL;
	return (0);
}

/* Runs q cancelled at each check in turn; returns the number of checks. */
static long
cancel_search_everywhere(hotel_query q)
{
	countdown     c;
	hotel_result *res = NULL, *full;
	char          err[128];
	long          p;

	/* Never cancelled: counts the checks (always the same). */
	q.stop = countdown_stop(&c, 0);
	assert_int_equal(
	    hotel_search(big, &q, &full, err, sizeof(err)), HOTEL_OK);
	p = atomic_load(&c.calls);
	q.stop = countdown_stop(&c, 0);
	assert_int_equal(
	    hotel_search(big, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(atomic_load(&c.calls), p);
	assert_int_equal(res->total, full->total);
	hotel_result_free(res);
	/* The start, and at least two checks in the middle of the work. */
	if (p < 3) {
		fail_msg("\"%s\": only %ld checks", q.text ? q.text : "", p);
	}
	print_message("search \"%s\": %ld checks\n", q.text ? q.text : "", p);
	for (long k = 1; k <= p; k++) {
		if (!worth(k, p)) {
			continue;
		}
		q.stop = countdown_stop(&c, k);
		err[0] = '\0';
		res = (hotel_result *) 0x1;
		assert_int_equal(hotel_search(big, &q, &res, err, sizeof(err)),
		    HOTEL_ECANCELED);
		assert_ptr_equal(res, (hotel_result *) 0x1); /* untouched */
		assert_string_equal(err, "cancelled");
		assert_int_equal(atomic_load(&c.calls), k); /* stopped there */
	}
	/* Cancelled after the last check: too late, the query is done. */
	q.stop = countdown_stop(&c, p + 1);
	assert_int_equal(
	    hotel_search(big, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->total, full->total);
	hotel_result_free(res);
	hotel_result_free(full);
	return (p);
}

static void
test_search_cancel(void **state)
{
	hotel_query q;
	(void) state;

	/* No words: every document, in rating order, counted in facets. */
	q = query(NULL);
	q.sort = HOTEL_SORT_RATING;
	q.facets = true;
	cancel_search_everywhere(q);
	/* No words, geo: the latitude band. */
	q = query(NULL);
	q.has_geo = true;
	q.lat = 48.8566;
	q.lon = 2.3522;
	q.radius_km = 3000;
	q.sort = HOTEL_SORT_DISTANCE;
	cancel_search_everywhere(q);
	/* A prefix of several terms and few postings: the k-way merge. */
	cancel_search_everywhere(query("ko"));
	/* A prefix with many postings: the dense array, alone... */
	cancel_search_everywhere(query("h"));
	/* ... and under an exact word's list (leapfrog). */
	cancel_search_everywhere(query("hotel h"));
	/* Two exact words and a prefix. */
	cancel_search_everywhere(query("hotel garden p"));
}

static void
test_search_stop_reason(void **state)
{
	atomic_bool flag;
	hotel_query q = query("hotel spa");
	(void) state;

	/* Cancelled before the start: at once, even with time left. */
	atomic_init(&flag, true);
	q.stop = (hotel_stop) { hotel_now_ns() + 60000000000LL,
		hotel_stop_flag, &flag };
	expect_search_error(big, &q, HOTEL_ECANCELED, "cancelled");
	/* Late and cancelled: the cancel is reported. */
	q.stop.deadline_ns = 1;
	expect_search_error(big, &q, HOTEL_ECANCELED, "cancelled");
	/* Late only. */
	atomic_store(&flag, false);
	expect_search_error(big, &q, HOTEL_EDEADLINE, "deadline exceeded");
}

static void
test_suggest_cancel(void **state)
{
	countdown         c;
	hotel_stop        stop;
	hotel_suggestion *s, *full;
	size_t            n, n_full;
	char              err[128];
	long              p;
	(void) state;

	stop = countdown_stop(&c, 0);
	assert_int_equal(hotel_suggest(big, "h", 10, &stop, &full, &n_full,
	                     err, sizeof(err)),
	    HOTEL_OK);
	p = atomic_load(&c.calls);
	assert_true(p >= 3);
	print_message("suggest \"h\": %ld checks\n", p);
	for (long k = 1; k <= p; k++) {
		if (!worth(k, p)) {
			continue;
		}
		stop = countdown_stop(&c, k);
		s = (hotel_suggestion *) 0x1;
		n = 77;
		assert_int_equal(hotel_suggest(big, "h", 10, &stop, &s, &n,
		                     err, sizeof(err)),
		    HOTEL_ECANCELED);
		assert_ptr_equal(s, (hotel_suggestion *) 0x1);
		assert_int_equal(n, 77);
		assert_string_equal(err, "cancelled");
		assert_int_equal(atomic_load(&c.calls), k);
	}
	stop = countdown_stop(&c, p + 1);
	assert_int_equal(
	    hotel_suggest(big, "h", 10, &stop, &s, &n, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(n, n_full);
	for (size_t i = 0; i < n; i++) {
		assert_ptr_equal(s[i].text, full[i].text);
	}
	hotel_suggestions_free(s);
	hotel_suggestions_free(full);
	/* A deadline already passed. */
	stop = (hotel_stop) { .deadline_ns = hotel_now_ns() - 1 };
	assert_int_equal(
	    hotel_suggest(big, "h", 10, &stop, &s, &n, err, sizeof(err)),
	    HOTEL_EDEADLINE);
	assert_string_equal(err, "deadline exceeded");
}

/* ---- builds ----------------------------------------------------------------
 */

#define BUILD_N 3000

static int
generate_op(const hotel_stop *stop, hotel_dataset **dsp)
{
	return (hotel_dataset_generate(BUILD_N, 9, stop, dsp));
}

static FILE *jsonl; /* BUILD_N hotels, for read_op */

static int
read_op(const hotel_stop *stop, hotel_dataset **dsp)
{
	char err[128] = "";
	int  rv;

	rewind(jsonl);
	rv = hotel_dataset_read_jsonl(jsonl, "t", stop, dsp, err, sizeof(err));
	if (rv == HOTEL_ECANCELED) {
		assert_string_equal(err, "cancelled");
	}
	return (rv);
}

/* Runs a build cancelled at each of its checks in turn: every one fails
 * with HOTEL_ECANCELED and leaves *dsp alone (what it built is freed: the
 * ASan build checks for leaks); cancelled after the last one it succeeds,
 * with the same dataset id as a build with no stop. */
static void
cancel_build_everywhere(int (*op)(const hotel_stop *, hotel_dataset **))
{
	countdown      c;
	hotel_stop     stop = countdown_stop(&c, 0);
	hotel_dataset *ds, *plain;
	hotel_stats    a, b;
	long           p;

	assert_int_equal(op(NULL, &plain), HOTEL_OK);
	assert_int_equal(op(&stop, &ds), HOTEL_OK);
	p = atomic_load(&c.calls);
	hotel_dataset_stats(plain, &a);
	hotel_dataset_stats(ds, &b);
	assert_string_equal(a.dataset_id, b.dataset_id);
	hotel_dataset_release(ds);
	/* Checks while adding hotels, in both build threads and between the
	 * steps. */
	assert_true(p >= 10);
	print_message("build: %ld checks\n", p);
	for (long k = 1; k <= p; k++) {
		stop = countdown_stop(&c, k);
		ds = (hotel_dataset *) 0x1;
		assert_int_equal(op(&stop, &ds), HOTEL_ECANCELED);
		assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	}
	stop = countdown_stop(&c, p + 1);
	assert_int_equal(op(&stop, &ds), HOTEL_OK);
	hotel_dataset_stats(ds, &b);
	assert_string_equal(a.dataset_id, b.dataset_id);
	hotel_dataset_release(ds);
	hotel_dataset_release(plain);
}

static void
test_generate_cancel(void **state)
{
	(void) state;
	cancel_build_everywhere(generate_op);
}

static int
setup_jsonl(void **state)
{
	hotel_dataset *ds;
	(void) state;

	if (hotel_dataset_generate(BUILD_N, 9, NULL, &ds) != HOTEL_OK
	    || (jsonl = tmpfile()) == NULL) {
		return (-1);
	}
	if (hotel_dataset_write_jsonl(ds, jsonl) != HOTEL_OK) {
		return (-1);
	}
	hotel_dataset_release(ds);
	return (0);
}

static int
teardown_jsonl(void **state)
{
	(void) state;
	fclose(jsonl);
	return (0);
}

static void
test_read_jsonl_cancel(void **state)
{
	(void) state;
	cancel_build_everywhere(read_op);
}

static void
test_build_deadline(void **state)
{
	hotel_stop     past = { .deadline_ns = hotel_now_ns() - 1 };
	hotel_stop     soon;
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	char           err[128];
	(void) state;

	assert_int_equal(
	    hotel_dataset_generate(10, 1, &past, &ds), HOTEL_EDEADLINE);
	rewind(jsonl);
	assert_int_equal(
	    hotel_dataset_read_jsonl(jsonl, "t", &past, &ds, err, sizeof(err)),
	    HOTEL_EDEADLINE);
	assert_string_equal(err, "deadline exceeded");
	/* A millisecond is far too short for 200000 hotels: the build
	 * stops part way. */
	soon.deadline_ns = hotel_now_ns() + 1000000;
	soon.cancelled = NULL;
	assert_int_equal(
	    hotel_dataset_generate(200000, 1, &soon, &ds), HOTEL_EDEADLINE);
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
}

/* ---- reloads keep the old dataset ------------------------------------------
 */

static void
expect_serving(hotel_engine *e, const char *dataset_id)
{
	hotel_dataset *ds = hotel_engine_acquire(e);
	hotel_stats    st;

	hotel_dataset_stats(ds, &st);
	assert_string_equal(st.dataset_id, dataset_id);
	hotel_dataset_release(ds);
}

static void
test_reload_stopped_keeps_old(void **state)
{
	hotel_engine  *e;
	hotel_dataset *ds = small_world();
	hotel_stats    st;
	countdown      c;
	hotel_stop     stop, past = { .deadline_ns = 1 };
	char           path[] = "/tmp/test_engine_stop_XXXXXX";
	char           old_id[17], err[128];
	int            fd;
	FILE          *f;
	(void) state;

	/* A JSON Lines file of BUILD_N hotels. */
	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	rewind(jsonl);
	for (int ch; (ch = getc(jsonl)) != EOF;) {
		putc(ch, f);
	}
	assert_int_equal(fclose(f), 0);

	hotel_dataset_stats(ds, &st);
	memcpy(old_id, st.dataset_id, sizeof(old_id));
	assert_int_equal(hotel_engine_open(ds, &e), HOTEL_OK);
	for (long k = 1; k <= 12; k++) {
		stop = countdown_stop(&c, k);
		assert_int_equal(hotel_engine_reload_jsonl(
		                     e, path, &stop, err, sizeof(err)),
		    HOTEL_ECANCELED);
		expect_serving(e, old_id);
		stop = countdown_stop(&c, k);
		assert_int_equal(
		    hotel_engine_reload_generate(e, BUILD_N, 9, &stop),
		    HOTEL_ECANCELED);
		expect_serving(e, old_id);
	}
	assert_int_equal(
	    hotel_engine_reload_jsonl(e, path, &past, err, sizeof(err)),
	    HOTEL_EDEADLINE);
	assert_int_equal(hotel_engine_reload_generate(e, BUILD_N, 9, &past),
	    HOTEL_EDEADLINE);
	expect_serving(e, old_id);
	/* Not stopped: the new one serves. */
	assert_int_equal(
	    hotel_engine_reload_jsonl(e, path, NULL, err, sizeof(err)),
	    HOTEL_OK);
	ds = hotel_engine_acquire(e);
	assert_int_equal(hotel_dataset_count(ds), BUILD_N);
	hotel_dataset_release(ds);
	hotel_engine_close(e);
	unlink(path);
}

/* ---- a flag set by another thread ------------------------------------------
 */

typedef struct setter {
	atomic_bool flag;
	long        delay_ms;
	int64_t     set_ns; /* when the flag was set; read after the join */
} setter;

static void *
set_later(void *arg)
{
	setter         *st = arg;
	struct timespec ts
	    = { st->delay_ms / 1000, (st->delay_ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
	st->set_ns = hotel_now_ns();
	atomic_store(&st->flag, true);
	return (NULL);
}

static void
test_cancel_from_another_thread(void **state)
{
	setter     st;
	pthread_t  tid;
	hotel_stop stop = { HOTEL_DEADLINE_NONE, hotel_stop_flag, &st.flag };
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	hotel_query    q = query("h");
	hotel_result  *res;
	int            rv = HOTEL_OK;
	long           i;
	(void) state;

	/* A build of 200000 hotels takes far longer than 20 ms: the flag,
	 * read by both build threads, stops it. */
	atomic_init(&st.flag, false);
	st.delay_ms = 20;
	assert_int_equal(pthread_create(&tid, NULL, set_later, &st), 0);
	rv = hotel_dataset_generate(200000, 3, &stop, &ds);
	pthread_join(tid, NULL);
	assert_int_equal(rv, HOTEL_ECANCELED);
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	print_message("generate stopped %.1f ms after the flag was set\n",
	    (double) (hotel_now_ns() - st.set_ns) / 1e6);

	/* Queries one after another until one is cancelled, mid-query or
	 * at its start (bounded: the flag is set after 5 ms). */
	atomic_store(&st.flag, false);
	st.delay_ms = 5;
	q.stop = stop;
	assert_int_equal(pthread_create(&tid, NULL, set_later, &st), 0);
	for (i = 0; i < 1000000; i++) {
		if ((rv = hotel_search(big, &q, &res, NULL, 0)) != HOTEL_OK) {
			break;
		}
		hotel_result_free(res);
	}
	pthread_join(tid, NULL);
	assert_int_equal(rv, HOTEL_ECANCELED);
}

int
main(void)
{
	const struct CMUnitTest queries[] = {
		cmocka_unit_test(test_stop_check),
		cmocka_unit_test(test_search_cancel),
		cmocka_unit_test(test_search_stop_reason),
		cmocka_unit_test(test_suggest_cancel),
		cmocka_unit_test(test_cancel_from_another_thread),
	};
	const struct CMUnitTest builds[] = {
		cmocka_unit_test(test_generate_cancel),
		cmocka_unit_test(test_read_jsonl_cancel),
		cmocka_unit_test(test_build_deadline),
		cmocka_unit_test(test_reload_stopped_keeps_old),
	};
	int failed = cmocka_run_group_tests_name(
	    "queries", queries, setup_big, teardown_big);

	return (failed
	    + cmocka_run_group_tests_name(
	        "builds", builds, setup_jsonl, teardown_jsonl));
}
