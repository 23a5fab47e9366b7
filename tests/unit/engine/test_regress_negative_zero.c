/*
 * Regression (found by tests/fuzz/fuzz_jsonl): a JSON Lines hotel with
 * "rating": -0.0 (or latitude / longitude -0.0). -0.0 passes the range
 * checks (-0.0 >= 0 is true) and is stored with its sign, then:
 *  - the rating sort keys on the double's bits, ~bits(-0.0) sorts before
 *    every rating, so a hotel rated -0 comes first in "rating desc";
 *  - the writer prints "-0", which jansson reads as the integer 0, so a
 *    write/load round trip gives +0.0 and another dataset id (the id hashes
 *    the bits), against hotel_dataset_write_jsonl()'s promise.
 * Crash input: tests/fuzz/regressions/fuzz_jsonl/negative-zero-rating.jsonl.
 */
#include "engine_test.h"

static const char lines[]
    = "{\"id\":1,\"name\":\"A\",\"city\":\"B\",\"country\":\"C\","
      "\"stars\":1,\"rating\":5}\n"
      "{\"id\":2,\"name\":\"D\",\"city\":\"B\",\"country\":\"C\","
      "\"stars\":1,\"rating\":-0.0,\"latitude\":-0.0}\n";

static hotel_dataset *
load(const char *text, size_t len)
{
	hotel_dataset *ds = NULL;
	char           err[256] = "";
	FILE          *f = fmemopen((void *) text, len, "r");

	assert_non_null(f);
	assert_int_equal(
	    hotel_dataset_read_jsonl(f, "test", NULL, &ds, err, sizeof(err)),
	    HOTEL_OK);
	fclose(f);
	return (ds);
}

static void
test_rating_sort(void **state)
{
	hotel_dataset *ds = load(lines, sizeof(lines) - 1);
	hotel_query    q = { .sort = HOTEL_SORT_RATING, .page_size = 10 };
	hotel_result  *r;
	char           err[256];

	(void) state;
	assert_int_equal(hotel_search(ds, &q, &r, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(r->n_hits, 2);
	/* rating desc: 5 first, then 0. */
	assert_int_equal(r->hits[0].hotel->id, 1);
	assert_int_equal(r->hits[1].hotel->id, 2);
	hotel_result_free(r);
	hotel_dataset_release(ds);
}

static void
test_round_trip(void **state)
{
	hotel_dataset *ds = load(lines, sizeof(lines) - 1), *ds2;
	hotel_stats    a, b;
	char          *buf = NULL;
	size_t         len = 0;
	FILE          *f = open_memstream(&buf, &len);

	(void) state;
	assert_int_equal(hotel_dataset_write_jsonl(ds, f), HOTEL_OK);
	fclose(f);
	ds2 = load(buf, len);
	hotel_dataset_stats(ds, &a);
	hotel_dataset_stats(ds2, &b);
	assert_string_equal(a.dataset_id, b.dataset_id);
	free(buf);
	hotel_dataset_release(ds2);
	hotel_dataset_release(ds);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rating_sort),
		cmocka_unit_test(test_round_trip),
	};
	return (cmocka_run_group_tests_name(
	    "regress_negative_zero", tests, NULL, NULL));
}
