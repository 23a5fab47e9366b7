/*
 * Monotonic time in nanoseconds: deadlines and the queue/run timings.
 */
#ifndef NNGRPC_CLOCK_H
#define NNGRPC_CLOCK_H

#include <stdint.h>

#include <nngrpc/export.h>

/* No deadline. */
#define NNGRPC_NO_DEADLINE INT64_MAX

/* Now on CLOCK_MONOTONIC, in ns: the clock of nngrpc_call_deadline().
 * Any thread. */
NNGRPC_API int64_t nngrpc_now_ns(void);

#endif /* NNGRPC_CLOCK_H */
