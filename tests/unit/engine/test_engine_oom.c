/*
 * Out of memory: every allocation the engine makes, failed in turn.
 *
 * The test links with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (see
 * engine.mk), so the engine's calls (it is a static library) come here; the
 * n-th one fails. Each operation is run with n = 1, 2, ... until it gets
 * through without meeting the failure: every run must return HOTEL_ENOMEM
 * (or succeed), leave its out-parameters alone, and leak nothing (ASan's
 * leak check in the SAN=1 build; the dataset's own byte counter is checked
 * by an assertion on every free).
 */
#include <unistd.h>

#include "engine_test.h"

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void *__wrap_malloc(size_t);
void *__wrap_calloc(size_t, size_t);
void *__wrap_realloc(void *, size_t);

static long countdown = -1; /* allocations left before one fails; -1: off */
static bool hit;            /* the failure was injected */

static bool
fail_now(void)
{
	if (countdown < 0) {
		return (false);
	}
	if (countdown-- == 0) {
		hit = true;
		return (true);
	}
	return (false);
}

void *
__wrap_malloc(size_t n)
{
	return (fail_now() ? NULL : __real_malloc(n));
}

void *
__wrap_calloc(size_t n, size_t s)
{
	return (fail_now() ? NULL : __real_calloc(n, s));
}

void *
__wrap_realloc(void *p, size_t n)
{
	return (fail_now() ? NULL : __real_realloc(p, n));
}

/* Runs op with the k-th allocation failing, k = 0, 1, ..., until a run
 * does not meet the failure; returns the number of runs. */
static long
each_failure(int (*op)(void *), void *arg)
{
	long k;
	for (k = 0;; k++) {
		int rv;
		hit = false;
		countdown = k;
		rv = op(arg);
		countdown = -1;
		if (!hit) {
			assert_int_equal(rv, HOTEL_OK);
			return (k + 1);
		}
		/* OK is fine too where a failure is tolerated (a
		 * shrink-to-fit realloc that fails keeps the larger block). */
		if (rv != HOTEL_ENOMEM && rv != HOTEL_OK) {
			fail_msg("allocation %ld failed: got %d, want ENOMEM",
			    k, rv);
		}
	}
}

static int
op_generate(void *arg)
{
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	int            rv = hotel_dataset_generate(300, 4, NULL, &ds);
	(void) arg;
	if (rv == HOTEL_OK) {
		hotel_dataset_release(ds);
	} else {
		assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	}
	return (rv);
}

static int
op_load(void *arg)
{
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	char           err[256];
	int rv = hotel_dataset_load_jsonl(arg, NULL, &ds, err, sizeof(err));
	if (rv == HOTEL_OK) {
		hotel_dataset_release(ds);
	} else {
		assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	}
	return (rv);
}

static hotel_dataset *shared_ds;

static int
op_search(void *arg)
{
	hotel_query   q = query(arg);
	hotel_result *res = (hotel_result *) 0x1;
	int           rv = hotel_search(shared_ds, &q, &res, NULL, 0);
	q.facets = true;
	if (rv == HOTEL_OK) {
		hotel_result_free(res);
		res = (hotel_result *) 0x1;
		rv = hotel_search(shared_ds, &q, &res, NULL, 0);
		if (rv == HOTEL_OK) {
			hotel_result_free(res);
		}
	}
	if (rv != HOTEL_OK) {
		assert_ptr_equal(res, (hotel_result *) 0x1);
	}
	return (rv);
}

static int
op_suggest(void *arg)
{
	hotel_suggestion *s = (hotel_suggestion *) 0x1;
	size_t            n;
	int rv = hotel_suggest(shared_ds, arg, 10, NULL, &s, &n, NULL, 0);
	if (rv == HOTEL_OK) {
		hotel_suggestions_free(s);
	} else {
		assert_ptr_equal(s, (hotel_suggestion *) 0x1);
	}
	return (rv);
}

static int
op_engine(void *arg)
{
	hotel_engine  *e;
	hotel_dataset *ds;
	int            rv;
	(void) arg;
	if ((rv = hotel_dataset_generate(20, 1, NULL, &ds)) != HOTEL_OK) {
		return (rv);
	}
	if ((rv = hotel_engine_open(ds, &e)) != HOTEL_OK) {
		hotel_dataset_release(ds);
		return (rv);
	}
	rv = hotel_engine_reload_generate(e, 30, 2, NULL);
	hotel_engine_close(e);
	return (rv);
}

static void
test_generate(void **state)
{
	(void) state;
	assert_true(each_failure(op_generate, NULL) > 20);
}

static void
test_load(void **state)
{
	hotel_dataset *ds;
	char           path[] = "/tmp/engine-oom-XXXXXX";
	int            fd = mkstemp(path);
	FILE          *f = fdopen(fd, "w");
	(void) state;

	assert_int_equal(hotel_dataset_generate(200, 9, NULL, &ds), HOTEL_OK);
	assert_int_equal(hotel_dataset_write_jsonl(ds, f), HOTEL_OK);
	fclose(f);
	hotel_dataset_release(ds);
	assert_true(each_failure(op_load, path) > 20);
	unlink(path);
}

static void
test_queries(void **state)
{
	(void) state;
	assert_int_equal(
	    hotel_dataset_generate(2000, 5, NULL, &shared_ds), HOTEL_OK);
	each_failure(op_search, NULL);
	each_failure(op_search, "hotel");
	each_failure(op_search, "spa ho"); /* prefix union, merged */
	each_failure(op_search, "h");      /* prefix union, dense */
	each_failure(op_suggest, "par");
	hotel_dataset_release(shared_ds);
	each_failure(op_engine, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_queries),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
