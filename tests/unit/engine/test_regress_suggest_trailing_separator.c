/*
 * Regression (found by tests/fuzz/fuzz_engine_query): a suggestion prefix
 * that ends with a separator ("Paris ", as a user types it before the next
 * word) loses every name in which that word is the last one: the city
 * "Paris" itself and "Hôtel Bellevue Paris". hotel.h: "a trailing space or
 * other separator ends the last word ("grand " does not find
 * "Grandview")": the word is complete, so "paris " matches what "paris"
 * matches as a whole word. hotel_suggest() appends a space to the folded
 * prefix and requires the entry to continue with it, so an entry that ends
 * right after the word ("paris") never matches.
 * Crash inputs: tests/fuzz/regressions/fuzz_engine_query/.
 */
#include "engine_test.h"

static void
assert_suggest(const hotel_dataset *ds, const char *prefix,
    const char *const *want, size_t n_want)
{
	hotel_suggestion *s;
	size_t            n;
	char              err[128];

	assert_int_equal(
	    hotel_suggest(ds, prefix, 10, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_OK);
	if (n != n_want) {
		fail_msg("suggest \"%s\": %zu results, want %zu", prefix, n,
		    n_want);
	}
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(s[i].text, want[i]);
	}
	hotel_suggestions_free(s);
}

static void
test_trailing_separator_keeps_last_words(void **state)
{
	hotel_dataset    *ds = small_world();
	const char *const paris[]
	    = { "Paris", "Hôtel Bellevue Paris", "Paris Budget Inn" };
	/* Both weigh 1200: the city first. */
	const char *const tokyo[] = { "Tokyo", "Grand Palace Tokyo" };

	(void) state;
	/* As without the separator: the word is whole in all three. */
	assert_suggest(ds, "paris", paris, 3);
	assert_suggest(ds, "paris ", paris, 3);
	assert_suggest(ds, "Paris,", paris, 3);
	assert_suggest(ds, "tokyo ", tokyo, 2);
	/* Still a whole word: "pari " is not "paris". */
	assert_suggest(ds, "pari ", NULL, 0);
	hotel_dataset_release(ds);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trailing_separator_keeps_last_words),
	};
	return (cmocka_run_group_tests_name(
	    "regress_suggest_trailing_separator", tests, NULL, NULL));
}
