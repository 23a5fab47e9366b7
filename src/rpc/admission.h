/*
 * CoDel-style admission for the server's queue: a queue that stays above
 * its target wait sheds what waits too long, instead of making every call
 * wait through it.
 *
 * DESIGN
 * ------
 * A bounded queue alone is a silent queue: when callers are many and
 * workers few, it fills and stays full, every call waits through all of
 * it, and a closed loop of callers never even sees it refuse anything.
 * CoDel (Nichols and Jacobson, "Controlling Queue Delay", 2012), as
 * fbthrift's servers use it for their request queue, looks at how long
 * calls have waited instead of how many wait: a burst that drains is
 * fine, a standing queue is not.
 *
 *   - The queue is "above" from the moment its oldest call has waited the
 *     target (for example 5 ms), as long as no call looked at since has
 *     waited less and the queue has not emptied.
 *   - Once it has been above for a whole interval (100 ms), it sheds: each
 *     call that has waited the target or longer when it is looked at is
 *     answered RESOURCE_EXHAUSTED at once, not run.
 *   - Shedding keeps the queue's waits below the target, so the calls that
 *     are served wait about the target at most, however many callers
 *     there are.
 *   - It stops once the queue keeps below the target by itself: when no
 *     call has reached the target for a whole interval. Then the queue
 *     admits again; only a new interval above the target starts shedding
 *     again. (It cannot stop at the first call taken below the target, nor
 *     at the first moment the queue is empty: shedding is what keeps it
 *     so, and a closed loop of callers refills it at once.)
 *
 * A burst shorter than the interval is absorbed as a bounded queue
 * absorbs it; a standing queue is not.
 *
 * The server looks only while every worker is busy: calls that wait while
 * a worker is free wait for the scheduler (a machine short of CPU), not
 * for the server's capacity, and shedding them would not help.
 *
 * The server looks at the oldest call whenever one arrives, whenever a
 * worker takes one, and at the moments nngrpc_admission_next_ns() names
 * (its admission thread sleeps until then): a closed loop of callers sends
 * nothing new while it waits, and workers that all started together all
 * finish together, so without that thread a call would be shed only when
 * the next worker comes free. A call is thus shed about when it reaches
 * the target.
 *
 * Threads: none of its own. The server calls these with its queue lock
 * held; the clock is passed in, so tests drive it by hand.
 */
#ifndef NNGRPC_RPC_ADMISSION_H
#define NNGRPC_RPC_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

typedef struct nngrpc_admission {
	int64_t a_target_ns;   /* 0: off, never sheds */
	int64_t a_interval_ns; /* how long above the target before shedding */
	int64_t a_above_ns;    /* since when the queue is above; 0: not */
	bool    a_shedding;
	int64_t a_last_shed_ns; /* when the last call was shed */
	int64_t a_shed;         /* calls shed so far */
} nngrpc_admission;

/* Starts with the queue not above its target. target_ns 0 turns shedding
 * off; interval_ns > 0 otherwise. */
void nngrpc_admission_init(
    nngrpc_admission *a, int64_t target_ns, int64_t interval_ns);

/* The queue is empty at now_ns (a worker found it so, or a call arrives
 * at an empty queue): it is not above the target. */
void nngrpc_admission_drained(nngrpc_admission *a, int64_t now_ns);

/* Looks at the oldest queued call, which has waited wait_ns at now_ns,
 * when a call arrives or a worker takes one. Returns true when that call
 * must be shed (answered RESOURCE_EXHAUSTED, not run); it is then counted
 * in a_shed. */
bool nngrpc_admission_shed(
    nngrpc_admission *a, int64_t wait_ns, int64_t now_ns);

/* When a look at the oldest queued call, received at oldest_recv_ns, can
 * next change something: the moment it reaches the target while shedding;
 * otherwise the moment the queue will have stood above the target for an
 * interval, if it is still above then. INT64_MAX when shedding is off. */
int64_t nngrpc_admission_next_ns(
    const nngrpc_admission *a, int64_t oldest_recv_ns);

#endif /* NNGRPC_RPC_ADMISSION_H */
