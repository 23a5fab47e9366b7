/*
 * Shared pieces of the engine's unit tests: cmocka, and the "small world",
 * a hand-made dataset whose expected answers are worked out in the tests.
 */
#ifndef TESTS_ENGINE_TEST_H
#define TESTS_ENGINE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/hotel.h"

#define A(x) HOTEL_AMENITY_BIT(HOTEL_AMENITY_##x)

/* Eleven hotels, ids 101..111, given out of id order. Paris centre is
 * 48.8566, 2.3522. */
static const hotel small_world_hotels[] = {
	{ 105, "Málaga Beach Hotel", "Málaga", "Spain",
	    "Seafront rooms with a pool.", 36.7213, -4.4214, 4, 15000, 7.9,
	    650, A(WIFI) | A(POOL) | A(BEACH) },
	{ 101, "Hôtel Bellevue Paris", "Paris", "France",
	    "Quiet rooms and a spa near the river.", 48.8566, 2.3522, 4, 18000,
	    8.7, 500, A(WIFI) | A(SPA) },
	{ 102, "Grand Palace Tokyo", "Tokyo", "Japan",
	    "A grand hotel with a pool, a spa and a gym.", 35.6762, 139.6503,
	    5, 45000, 9.1, 1200, A(WIFI) | A(POOL) | A(SPA) | A(GYM) },
	{ 103, "Pousada São Paulo", "São Paulo", "Brazil",
	    "Simple rooms, breakfast included.", -23.5505, -46.6333, 3, 9000,
	    8.2, 300, A(WIFI) | A(BREAKFAST) },
	{ 104, "Zürich Lake Inn", "Zürich", "Switzerland",
	    "By the lake, with parking.", 47.3769, 8.5417, 3, 21000, 8.7, 800,
	    A(WIFI) | A(PARKING) },
	{ 106, "Paris Budget Inn", "Paris", "France", "Small clean rooms.",
	    48.86, 2.34, 2, 7000, 6.5, 90, A(WIFI) },
	{ 107, "Louvre Suites", "Paris", "France",
	    "Suites with room service and a spa.", 48.8606, 2.3376, 5, 52000,
	    9.1, 1200, A(WIFI) | A(SPA) | A(ROOM_SERVICE) },
	{ 108, "London Bridge Hotel", "London", "United Kingdom",
	    "Views of the bridge, a gym and a bar.", 51.5074, -0.1278, 4,
	    25000, 8.7, 800, A(WIFI) | A(GYM) | A(BAR) },
	{ 109, "Kyoto Garden Ryokan", "Kyoto", "Japan",
	    "Tatami rooms, breakfast and an onsen spa.", 35.0116, 135.7681, 4,
	    30000, 9.5, 400, A(BREAKFAST) | A(SPA) },
	{ 110, "Eiffel View Hotel", "Paris", "France",
	    "Rooms with a view, breakfast included.", 48.8584, 2.2945, 3,
	    16000, 8.0, 0, A(WIFI) | A(BREAKFAST) },
	{ 111, "Paris Budget Inn", "Paris", "France", "Clean, small rooms.",
	    48.85, 2.36, 2, 6500, 7.0, 150, A(WIFI) },
};

static inline hotel_dataset *
small_world(void)
{
	hotel_dataset *ds = NULL;
	char           err[256];
	int            rv = hotel_dataset_from_array(small_world_hotels,
	               sizeof(small_world_hotels) / sizeof(hotel), &ds, err, sizeof(err));
	if (rv != HOTEL_OK) {
		fail_msg("small_world: %s", err);
	}
	return (ds);
}

static inline hotel_query
query(const char *text)
{
	hotel_query q = { 0 };
	q.text = text;
	q.page_size = HOTEL_PAGE_SIZE_MAX;
	q.stop.deadline_ns = HOTEL_DEADLINE_NONE;
	return (q);
}

/* Runs q and writes the hit ids (up to cap) into ids; returns n_hits. */
static inline size_t
run_ids(const hotel_dataset *ds, const hotel_query *q, uint64_t *ids,
    size_t cap, uint64_t *totalp)
{
	hotel_result *res;
	char          err[256];
	int           rv = hotel_search(ds, q, &res, err, sizeof(err));
	size_t        n;

	if (rv != HOTEL_OK) {
		fail_msg("search \"%s\": %s", q->text ? q->text : "", err);
	}
	n = res->n_hits;
	for (size_t i = 0; i < n && i < cap; i++) {
		ids[i] = res->hits[i].hotel->id;
	}
	if (totalp != NULL) {
		*totalp = res->total;
	}
	hotel_result_free(res);
	return (n);
}

/* Asserts that q's hits are exactly want[0..n) in order. */
#define assert_hits(ds, q, ...)                                               \
	do {                                                                  \
		const uint64_t want_[] = { __VA_ARGS__ };                     \
		size_t         nw_ = sizeof(want_) / sizeof(want_[0]);        \
		uint64_t       got_[128];                                     \
		uint64_t       total_;                                        \
		size_t         ng_ = run_ids(ds, q, got_, 128, &total_);      \
		assert_int_equal(ng_, nw_);                                   \
		assert_int_equal(total_, nw_);                                \
		for (size_t i_ = 0; i_ < nw_; i_++) {                         \
			assert_int_equal(got_[i_], want_[i_]);                \
		}                                                             \
	} while (0)

/* Runs q expecting failure rv with a message containing msg. */
static inline void
expect_search_error(
    const hotel_dataset *ds, const hotel_query *q, int rv, const char *msg)
{
	hotel_result *res = (hotel_result *) 0x1;
	char          err[256] = "";
	assert_int_equal(hotel_search(ds, q, &res, err, sizeof(err)), rv);
	assert_ptr_equal(res, (hotel_result *) 0x1); /* untouched */
	if (strstr(err, msg) == NULL) {
		fail_msg("error \"%s\" does not contain \"%s\"", err, msg);
	}
}

#endif /* TESTS_ENGINE_TEST_H */
