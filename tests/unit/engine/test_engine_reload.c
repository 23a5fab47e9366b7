/*
 * Reload under load: reader threads search while another thread swaps
 * datasets 100 times. Built twice: with the other unit tests (and so under
 * ASan+UBSan with SAN=1), and with -fsanitize=thread (make engine-tsan).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "engine_test.h"

#define READERS 4
#define RELOADS 100

typedef struct shared {
	hotel_engine *engine;
	atomic_bool   done;
	atomic_long   searches;
	atomic_long   failures;
} shared;

static void *
reader(void *arg)
{
	shared *sh = arg;

	while (!atomic_load(&sh->done)) {
		hotel_dataset *ds = hotel_engine_acquire(sh->engine);
		hotel_query    q = query(NULL);
		hotel_result  *res = NULL;
		char           err[128];
		size_t         n = hotel_dataset_count(ds);

		/* The empty query sees the whole of one dataset: never a mix,
		 * never half built. */
		q.page_size = 5;
		q.facets = true;
		if (hotel_search(ds, &q, &res, err, sizeof(err)) != HOTEL_OK
		    || res->total != n || res->n_hits != 5
		    || res->hits[0].hotel != hotel_dataset_at(ds, 0)) {
			atomic_fetch_add(&sh->failures, 1);
		} else {
			uint64_t sum = 0;
			for (int s = 1; s <= 5; s++) {
				sum += res->stars_facet[s];
			}
			if (sum != n) {
				atomic_fetch_add(&sh->failures, 1);
			}
		}
		if (res != NULL) {
			hotel_result_free(res);
			res = NULL;
		}
		/* Words and a lookup, on the same reference. */
		q = query("hotel spa");
		if (hotel_search(ds, &q, &res, err, sizeof(err)) != HOTEL_OK) {
			atomic_fetch_add(&sh->failures, 1);
		} else {
			for (size_t i = 0; i < res->n_hits; i++) {
				const hotel *h;
				if (hotel_get(ds, res->hits[i].hotel->id, &h)
				        != HOTEL_OK
				    || h != res->hits[i].hotel) {
					atomic_fetch_add(&sh->failures, 1);
				}
			}
			hotel_result_free(res);
		}
		hotel_dataset_release(ds);
		atomic_fetch_add(&sh->searches, 1);
	}
	return (NULL);
}

static void
test_reload_under_load(void **state)
{
	hotel_dataset *a, *b;
	shared         sh;
	pthread_t      th[READERS];
	(void) state;

	/* Two small datasets swapped back and forth; every tenth reload
	 * builds a fresh one instead, so old datasets are really freed by
	 * their last reader. */
	assert_int_equal(hotel_dataset_generate(300, 1, NULL, &a), HOTEL_OK);
	assert_int_equal(hotel_dataset_generate(450, 2, NULL, &b), HOTEL_OK);
	memset(&sh, 0, sizeof(sh));
	assert_int_equal(
	    hotel_engine_open(hotel_dataset_retain(a), &sh.engine), HOTEL_OK);
	for (int i = 0; i < READERS; i++) {
		assert_int_equal(pthread_create(&th[i], NULL, reader, &sh), 0);
	}
	for (int i = 0; i < RELOADS; i++) {
		long before = atomic_load(&sh.searches);
		if (i % 10 == 9) {
			assert_int_equal(
			    hotel_engine_reload_generate(sh.engine,
			        200 + (size_t) i, (uint64_t) i, NULL),
			    HOTEL_OK);
		} else {
			hotel_engine_swap(
			    sh.engine, hotel_dataset_retain(i % 2 ? a : b));
		}
		/* Let the readers get some searches in on each one. */
		while (atomic_load(&sh.searches) < before + 2) {
			sched_yield();
		}
	}
	atomic_store(&sh.done, true);
	for (int i = 0; i < READERS; i++) {
		pthread_join(th[i], NULL);
	}
	assert_int_equal(atomic_load(&sh.failures), 0);
	assert_true(atomic_load(&sh.searches) >= 2 * RELOADS);
	hotel_engine_close(sh.engine);
	hotel_dataset_release(a);
	hotel_dataset_release(b);
}

static void
test_reader_outlives_swap(void **state)
{
	hotel_dataset *a, *b, *held;
	hotel_engine  *e;
	hotel_query    q = query("hotel");
	hotel_result  *res;
	char           err[128];
	(void) state;

	assert_int_equal(hotel_dataset_generate(100, 1, NULL, &a), HOTEL_OK);
	assert_int_equal(hotel_dataset_generate(100, 2, NULL, &b), HOTEL_OK);
	assert_int_equal(hotel_engine_open(a, &e), HOTEL_OK);
	held = hotel_engine_acquire(e);
	assert_ptr_equal(held, a);
	assert_int_equal(
	    hotel_search(held, &q, &res, err, sizeof(err)), HOTEL_OK);
	/* The engine lets go of a; the reader still has it and its result. */
	hotel_engine_swap(e, b);
	assert_true(res->hits[0].hotel >= hotel_dataset_at(held, 0)
	    && res->hits[0].hotel <= hotel_dataset_at(held, 99));
	assert_non_null(strstr(res->hits[0].hotel->name, "Hotel"));
	hotel_result_free(res);
	assert_int_equal(
	    hotel_search(held, &q, &res, err, sizeof(err)), HOTEL_OK);
	hotel_result_free(res);
	hotel_dataset_release(held); /* frees a (ASan would see a misuse) */
	held = hotel_engine_acquire(e);
	assert_ptr_equal(held, b);
	hotel_dataset_release(held);
	/* The engine can be closed while a reader holds the dataset. */
	held = hotel_engine_acquire(e);
	hotel_engine_close(e);
	assert_int_equal(hotel_dataset_count(held), 100);
	hotel_dataset_release(held);
}

static void
test_engine_errors(void **state)
{
	hotel_engine *e = (hotel_engine *) 0x1;
	(void) state;
	assert_int_equal(hotel_engine_open(NULL, &e), HOTEL_EINVAL);
	assert_ptr_equal(e, (hotel_engine *) 0x1);
	hotel_engine_close(NULL);
	{
		hotel_dataset *ds;
		assert_int_equal(
		    hotel_dataset_generate(10, 1, NULL, &ds), HOTEL_OK);
		assert_int_equal(hotel_engine_open(ds, &e), HOTEL_OK);
		assert_int_equal(
		    hotel_engine_reload_generate(e, 0, 1, NULL), HOTEL_EINVAL);
		assert_int_equal(hotel_engine_reload_jsonl(
		                     e, "/nonexistent/x.jsonl", NULL, NULL, 0),
		    HOTEL_EIO);
		ds = hotel_engine_acquire(e);
		assert_int_equal(hotel_dataset_count(ds), 10);
		hotel_dataset_release(ds);
		hotel_engine_close(e);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload_under_load),
		cmocka_unit_test(test_reader_outlives_swap),
		cmocka_unit_test(test_engine_errors),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
