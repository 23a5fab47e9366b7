/* CoDel-style admission (src/rpc/admission.h), on a clock driven by hand:
 * when it starts shedding, what it sheds, when it stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "admission.h"

#define MS 1000000LL

/* Target 5 ms, interval 100 ms. */
static void
init(nngrpc_admission *a)
{
	nngrpc_admission_init(a, 5 * MS, 100 * MS);
}

static void
test_off_never_sheds(void **state)
{
	nngrpc_admission a;

	(void) state;
	nngrpc_admission_init(&a, 0, 100 * MS);
	for (int64_t t = 0; t < 10000 * MS; t += 10 * MS) {
		assert_false(nngrpc_admission_shed(&a, 5000 * MS, t));
	}
	assert_int_equal(a.a_shed, 0);
}

static void
test_burst_shorter_than_interval_is_absorbed(void **state)
{
	nngrpc_admission a;

	(void) state;
	init(&a);
	/* The oldest call waits up to 80 ms, then the queue drains. */
	for (int64_t t = 10 * MS; t <= 85 * MS; t += MS) {
		assert_false(nngrpc_admission_shed(&a, t - 5 * MS, t));
	}
	nngrpc_admission_drained(&a, 86 * MS);
	/* A second burst: its own interval starts again. */
	for (int64_t t = 200 * MS; t <= 290 * MS; t += MS) {
		assert_false(nngrpc_admission_shed(&a, t - 195 * MS, t));
	}
	assert_false(a.a_shedding);
	assert_int_equal(a.a_shed, 0);
}

static void
test_standing_queue_sheds_after_one_interval(void **state)
{
	nngrpc_admission a;

	(void) state;
	init(&a);
	/* Every call looked at has waited 20 ms: above since the first
	 * reached 5 ms, i.e. 15 ms before the first look at t = 20 ms. */
	assert_false(nngrpc_admission_shed(&a, 20 * MS, 20 * MS));
	assert_int_equal(a.a_above_ns, 5 * MS);
	assert_false(nngrpc_admission_shed(&a, 20 * MS, 104 * MS));
	assert_true(nngrpc_admission_shed(&a, 20 * MS, 105 * MS));
	assert_true(a.a_shedding);
	/* Younger calls are served, older ones shed. */
	assert_false(nngrpc_admission_shed(&a, 4 * MS, 106 * MS));
	assert_true(nngrpc_admission_shed(&a, 5 * MS, 107 * MS));
	assert_int_equal(a.a_shed, 2);
}

static void
test_call_below_target_resets_before_shedding(void **state)
{
	nngrpc_admission a;

	(void) state;
	init(&a);
	assert_false(nngrpc_admission_shed(&a, 10 * MS, 60 * MS));
	/* A call taken after 1 ms: the queue was not standing. */
	assert_false(nngrpc_admission_shed(&a, 1 * MS, 90 * MS));
	assert_int_equal(a.a_above_ns, 0);
	assert_false(nngrpc_admission_shed(&a, 10 * MS, 120 * MS));
	assert_false(nngrpc_admission_shed(&a, 10 * MS, 214 * MS));
	assert_true(nngrpc_admission_shed(&a, 10 * MS, 215 * MS));
}

static void
test_shedding_holds_while_calls_reach_the_target(void **state)
{
	nngrpc_admission a;
	int64_t          t;

	(void) state;
	init(&a);
	assert_true(nngrpc_admission_shed(&a, 200 * MS, 200 * MS));
	/* A closed loop refills the queue: taken calls wait 3 ms, an empty
	 * queue now and then, and a call reaches the target every 50 ms. */
	for (t = 201 * MS; t < 2000 * MS; t += MS) {
		if (t % (50 * MS) == 0) {
			assert_true(nngrpc_admission_shed(&a, 6 * MS, t));
		} else if (t % (7 * MS) == 0) {
			nngrpc_admission_drained(&a, t);
		} else {
			assert_false(nngrpc_admission_shed(&a, 3 * MS, t));
		}
		assert_true(a.a_shedding);
	}
}

static void
test_stops_after_an_interval_without_shedding(void **state)
{
	nngrpc_admission a;

	(void) state;
	init(&a);
	assert_true(nngrpc_admission_shed(&a, 200 * MS, 200 * MS));
	assert_false(nngrpc_admission_shed(&a, 1 * MS, 250 * MS));
	assert_true(a.a_shedding);
	assert_false(nngrpc_admission_shed(&a, 1 * MS, 300 * MS));
	assert_false(a.a_shedding);
	/* Admits again: a call past the target is served, until the queue
	 * has stood above it for a new interval. */
	assert_false(nngrpc_admission_shed(&a, 10 * MS, 310 * MS));
	assert_false(nngrpc_admission_shed(&a, 10 * MS, 404 * MS));
	assert_true(nngrpc_admission_shed(&a, 10 * MS, 405 * MS));
}

static void
test_workers_stuck_queue_still_sheds(void **state)
{
	nngrpc_admission a;

	(void) state;
	init(&a);
	/* No worker takes anything: only arrivals look at the oldest call,
	 * which has been waiting since t = 0. */
	assert_false(nngrpc_admission_shed(&a, 50 * MS, 50 * MS));
	assert_true(nngrpc_admission_shed(&a, 105 * MS, 105 * MS));
	/* Each later arrival finds the call before it past the target. */
	for (int64_t t = 115 * MS; t < 1000 * MS; t += 10 * MS) {
		assert_true(nngrpc_admission_shed(&a, 10 * MS, t));
	}
}

static void
test_next_look(void **state)
{
	nngrpc_admission a;

	(void) state;
	nngrpc_admission_init(&a, 0, 100 * MS);
	assert_true(nngrpc_admission_next_ns(&a, 0) == INT64_MAX);
	init(&a);
	/* Not above yet: the oldest call reaches the target at 15 ms, and
	 * shedding could start an interval later. */
	assert_true(nngrpc_admission_next_ns(&a, 10 * MS) == 115 * MS);
	/* Above since 5 ms: shedding could start at 105 ms, whichever call
	 * is the oldest now. */
	assert_false(nngrpc_admission_shed(&a, 20 * MS, 20 * MS));
	assert_true(nngrpc_admission_next_ns(&a, 18 * MS) == 105 * MS);
	/* Shedding: the oldest call is shed when it reaches the target. */
	assert_true(nngrpc_admission_shed(&a, 20 * MS, 105 * MS));
	assert_true(nngrpc_admission_next_ns(&a, 104 * MS) == 109 * MS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_never_sheds),
		cmocka_unit_test(test_burst_shorter_than_interval_is_absorbed),
		cmocka_unit_test(test_standing_queue_sheds_after_one_interval),
		cmocka_unit_test(
		    test_call_below_target_resets_before_shedding),
		cmocka_unit_test(
		    test_shedding_holds_while_calls_reach_the_target),
		cmocka_unit_test(
		    test_stops_after_an_interval_without_shedding),
		cmocka_unit_test(test_workers_stuck_queue_still_sheds),
		cmocka_unit_test(test_next_look),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
