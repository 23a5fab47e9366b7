/*
 * The zygote and its workers: the two kinds of process that process
 * isolation forks, neither of which ever calls libnng (a forked child of
 * a process that used libnng aborts on its first NNG call).
 *
 * The zygote is forked by nngrpc_serve() after the service's setup and
 * before the server starts, so it holds the registered services and
 * nothing of NNG's. It is single-threaded and answers its control socket
 * (isoproto.h) one frame at a time:
 *   ISO_LOAD    runs the service's load step, forks `workers` workers,
 *               then answers ISO_LOADED;
 *   ISO_SPAWN   forks one worker (a replacement) and answers ISO_SPAWNED
 *               with the worker's socket attached;
 *   ISO_RELOAD  runs a reload method's handler here, so the zygote keeps
 *               the new state; on OK forks `workers` workers of the next
 *               generation (ISO_SPAWNED each), then answers ISO_RELOADED;
 *   ISO_GAUGES  reads the service's gauges (ISO_GAUGE_VALUES), for
 *               /metrics.
 * While it runs a load or a reload it forks nothing: replacements wait.
 * It reaps its dead workers, and exits when the control socket closes
 * (or, through PR_SET_PDEATHSIG, when the front end dies).
 *
 * A worker shares the zygote's memory copy-on-write. It installs the
 * crash handler (crash.h) and the sandbox (sandbox.h), then runs calls
 * from its socket one at a time through nngrpc_dispatch_invoke() until
 * the socket closes. It dies with the front end or the zygote.
 */
#ifndef NNGRPC_RPC_ZYGOTE_H
#define NNGRPC_RPC_ZYGOTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "dispatch.h"
#include "metrics.h"

typedef struct zygote_spec {
	/* The registry, as setup left it (borrowed; the zygote's copy). */
	nngrpc_dispatch *dispatch;
	/* The load step, in the zygote: 0, or an exit code with err
	 * written. */
	int (*load)(void *arg, char *err, size_t errlen);
	void *load_arg;
	/* Workers forked after a load or a reload. */
	int workers;
	/* Install the seccomp sandbox in workers. */
	bool sandbox;
	/* The server's metrics (the zygote's copy): ISO_GAUGES reads the
	 * service's gauges here, where the loaded state is. */
	nngrpc_metrics *metrics;
	/* In memory shared with the front end (MAP_SHARED, made before the
	 * fork), set there when the caller of the reload that runs gave up:
	 * the reload's nngrpc_call_cancelled() reads it. A flag rather than
	 * a frame: the control socket also carries the front end's other
	 * requests (ISO_GAUGES, ISO_SPAWN), which must not read as a cancel
	 * while a reload runs. */
	const atomic_bool *reload_cancel;
} zygote_spec;

/*
 * Forks the zygote. In the front end returns 0 with *ctlp, the control
 * socket (owned by the caller, who closes it to end the zygote), and
 * *pidp; or an errno value. In the zygote it never returns. Call it while
 * the process has one thread and has not used libnng.
 */
int zygote_fork(const zygote_spec *spec, int *ctlp, pid_t *pidp);

/* One worker's call loop on fd, in the calling process (a forked worker,
 * or a test): returns when fd closes. */
void zygote_worker_loop(nngrpc_dispatch *d, int fd);

#endif /* NNGRPC_RPC_ZYGOTE_H */
