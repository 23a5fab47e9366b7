/*
 * CoDel-style admission (admission.h has the design).
 */
#include "admission.h"

void
nngrpc_admission_init(
    nngrpc_admission *a, int64_t target_ns, int64_t interval_ns)
{
	a->a_target_ns = target_ns > 0 ? target_ns : 0;
	a->a_interval_ns = interval_ns > 0 ? interval_ns : 0;
	a->a_above_ns = 0;
	a->a_shedding = false;
	a->a_last_shed_ns = 0;
	a->a_shed = 0;
}

void
nngrpc_admission_drained(nngrpc_admission *a, int64_t now_ns)
{
	(void) nngrpc_admission_shed(a, 0, now_ns);
}

bool
nngrpc_admission_shed(nngrpc_admission *a, int64_t wait_ns, int64_t now_ns)
{
	if (a->a_target_ns == 0) {
		return (false);
	}
	if (a->a_shedding && now_ns - a->a_last_shed_ns >= a->a_interval_ns) {
		/* No call reached the target for an interval: the queue
		 * keeps below it by itself. */
		a->a_shedding = false;
		a->a_above_ns = 0;
	}
	if (wait_ns < a->a_target_ns) {
		if (!a->a_shedding) {
			a->a_above_ns = 0;
		}
		return (false);
	}
	if (a->a_above_ns == 0) {
		/* Above since this call reached the target: every call
		 * looked at since the queue was last below arrived before it
		 * (FIFO) and is gone. */
		a->a_above_ns = now_ns - (wait_ns - a->a_target_ns);
	}
	if (!a->a_shedding && now_ns - a->a_above_ns >= a->a_interval_ns) {
		a->a_shedding = true;
	}
	if (!a->a_shedding) {
		return (false);
	}
	a->a_last_shed_ns = now_ns;
	a->a_shed++;
	return (true);
}

int64_t
nngrpc_admission_next_ns(const nngrpc_admission *a, int64_t oldest_recv_ns)
{
	int64_t reaches = oldest_recv_ns + a->a_target_ns;

	if (a->a_target_ns == 0) {
		return (INT64_MAX);
	}
	if (a->a_shedding) {
		return (reaches);
	}
	if (a->a_above_ns != 0 && a->a_above_ns < reaches) {
		reaches = a->a_above_ns;
	}
	return (reaches + a->a_interval_ns);
}
