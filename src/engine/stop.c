/*
 * Stopping: deadlines and cancellation (hotel.h, "stopping"), and the
 * ticker the loops use (stop.h).
 *
 * DESIGN
 * ------
 * A hotel_stop belongs to the caller; the engine only reads it. The cancel
 * function is called where the clock is read, never more often, and
 * cancellation is looked at before the deadline so that a call that was
 * both cancelled and late reports the cancel. A ticker that has stopped
 * stays stopped (rv), so the loops that see it unwind without looking
 * again. During a build, the thread that sees a stop first stores it in
 * the build's shared result; the other thread reads that at its next poll
 * and stops too, with the same reason, without calling the cancel function.
 */
#include "stop.h"

int
hotel_stop_check(const hotel_stop *stop)
{
	if (stop == NULL) {
		return (HOTEL_OK);
	}
	if (stop->cancelled != NULL && stop->cancelled(stop->cancel_arg)) {
		return (HOTEL_ECANCELED);
	}
	if (stop->deadline_ns != 0 && stop->deadline_ns != HOTEL_DEADLINE_NONE
	    && hotel_now_ns() >= stop->deadline_ns) {
		return (HOTEL_EDEADLINE);
	}
	return (HOTEL_OK);
}

bool
hotel_stop_flag(void *cancel_arg)
{
	return (atomic_load_explicit(
	    (atomic_bool *) cancel_arg, memory_order_acquire));
}

void
hotel__ticker_init(
    hotel__ticker *t, const hotel_stop *stop, atomic_int *shared)
{
	bool armed = stop != NULL
	    && (stop->cancelled != NULL
	        || (stop->deadline_ns != 0
	            && stop->deadline_ns != HOTEL_DEADLINE_NONE));

	t->stop = armed ? stop : NULL;
	t->shared = shared;
	t->rv = HOTEL_OK;
}

int
hotel__ticker_poll(hotel__ticker *t)
{
	int rv = HOTEL_OK;

	if (t->rv != HOTEL_OK || t->stop == NULL) {
		return (t->rv);
	}
	if (t->shared != NULL) {
		rv = atomic_load_explicit(t->shared, memory_order_relaxed);
	}
	if (rv == HOTEL_OK && (rv = hotel_stop_check(t->stop)) != HOTEL_OK
	    && t->shared != NULL) {
		atomic_store_explicit(t->shared, rv, memory_order_relaxed);
	}
	t->rv = rv;
	return (rv);
}
