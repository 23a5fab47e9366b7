/*
 * The runtime's clock (include/nngrpc/clock.h). A function, not an inline
 * in the public header, so that header needs no POSIX feature macro in a
 * program built with -std=c11.
 */
#include <nngrpc/clock.h>

#include <time.h>

int64_t
nngrpc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}
