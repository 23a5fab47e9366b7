/*
 * Stopping inside the engine: a ticker spreads hotel_stop checks over the
 * loops, one look at the clock and the cancel function every
 * HOTEL_STOP_EVERY units of work of a loop, so that the hot loops pay an
 * increment and a test of a counter in a register.
 */
#ifndef ENGINE_STOP_H
#define ENGINE_STOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hotel.h"

_Static_assert((HOTEL_STOP_EVERY & (HOTEL_STOP_EVERY - 1)) == 0,
    "HOTEL_STOP_EVERY is a power of two");

/* One thread's view of a stop. A build's two threads have a ticker each,
 * sharing one result (shared), so that either thread's stop ends both. */
typedef struct hotel__ticker {
	const hotel_stop *stop;   /* NULL when nothing can stop the work */
	atomic_int       *shared; /* NULL, or the build's shared result */
	int               rv;     /* HOTEL_OK until stopped */
} hotel__ticker;

/* Borrows stop (may be NULL) and shared (may be NULL) until the last
 * tick. */
void hotel__ticker_init(
    hotel__ticker *t, const hotel_stop *stop, atomic_int *shared);

/* Looks now: at the shared result, then at the stop; once stopped, stores
 * the reason in t->rv (and in the shared result). Returns t->rv. */
int hotel__ticker_poll(hotel__ticker *t);

/* Called after each unit of work of a loop, with work the units the loop
 * has done so far (a local of the loop, counted from 1: in a register, not
 * in *t, which the loop's calls may touch). Polls when work is a multiple
 * of HOTEL_STOP_EVERY. True once stopped (t->rv says why): the loop
 * returns. */
static inline bool
hotel__tick(hotel__ticker *t, uint32_t work)
{
	return ((work & (HOTEL_STOP_EVERY - 1)) == 0
	    && hotel__ticker_poll(t) != HOTEL_OK);
}

#endif /* ENGINE_STOP_H */
