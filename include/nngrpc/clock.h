/*
 * Monotonic time in nanoseconds: deadlines and the queue/run timings.
 */
#ifndef NNGRPC_CLOCK_H
#define NNGRPC_CLOCK_H

#include <stdint.h>
#include <time.h>

/* No deadline. */
#define NNGRPC_NO_DEADLINE INT64_MAX

static inline int64_t
nngrpc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}

#endif /* NNGRPC_CLOCK_H */
