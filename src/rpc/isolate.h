/*
 * Process isolation, the front end's side (nngrpc_serve()'s --isolation
 * process): a pool of worker processes forked by the zygote (zygote.h),
 * and the dispatch runner that hands each call to one of them.
 *
 * A worker thread of the server that runs a call takes an idle worker
 * process, writes the request to its socket and waits for the reply.
 * What can happen to the call:
 *   - a reply: the worker goes back to the pool;
 *   - the worker crashes (a signal): INTERNAL, naming the signal and the
 *     request id; counted in /metrics by method and signal; the request
 *     envelope saved in --crash-dir; a replacement asked of the zygote;
 *   - the call runs past its deadline plus the grace: the worker is
 *     killed, DEADLINE_EXCEEDED, replaced;
 *   - the worker's resident memory grows past --worker-memory-mb: killed,
 *     RESOURCE_EXHAUSTED, replaced;
 *   - the same method and payload crashed workers N times within the
 *     window (the poison-pill guard): INTERNAL at once, not run.
 * Reload methods (nngrpc_server_set_reload()) run in the zygote; once one
 * succeeds the zygote forks the next generation of workers, new calls go
 * to them, and the older ones leave the pool as they finish.
 *
 * Threads: the runner runs on the server's worker threads, any number at
 * once; a supervisor thread reads the zygote's control socket. i_mtx
 * guards the pool, the counters and the tables; i_ctl_mtx the writes to
 * the control socket; i_reload_mtx lets one reload run at a time. Lock
 * order: i_reload_mtx, then i_ctl_mtx or i_mtx, never both of the last.
 */
#ifndef NNGRPC_RPC_ISOLATE_H
#define NNGRPC_RPC_ISOLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "metrics.h"

typedef struct nngrpc_isolate nngrpc_isolate;

typedef struct nngrpc_isolate_config {
	int         workers;  /* worker processes (one per worker thread) */
	int64_t     grace_ns; /* past the deadline before a kill */
	uint64_t    memory_limit;   /* bytes of resident growth; 0: no limit */
	const char *crash_dir;      /* where request envelopes go, or NULL */
	const char *program;        /* for the replay hint in the log */
	int         poison_crashes; /* 0: no poison-pill guard */
	int64_t     poison_window_ns; /* ...within this long */
	bool        sandbox;          /* seccomp in the workers */
} nngrpc_isolate_config;

/* Returns new: *isop (config copied, strings borrowed until freed), freed
 * with nngrpc_isolate_free(). 0 or an errno value. */
int nngrpc_isolate_alloc(
    const nngrpc_isolate_config *cfg, nngrpc_isolate **isop);

/*
 * Forks the zygote, which keeps d and m (borrowed: the service's gauges
 * are read there) and runs load(load_arg, ...) when asked. While the process
 * has one thread and before any libnng use. 0 or an errno value.
 */
int nngrpc_isolate_fork(nngrpc_isolate *iso, nngrpc_dispatch *d,
    nngrpc_metrics *m, int (*load)(void *, char *, size_t), void *load_arg);

/* Starts the supervisor thread, has the zygote load and fork the
 * workers, and waits for it. Returns 0, or the exit code load gave (err
 * written), or 1 when the zygote is gone. */
int nngrpc_isolate_load(nngrpc_isolate *iso, char *err, size_t errlen);

/* The dispatch runner (nngrpc_dispatch_runner); arg is the isolate. */
nngrpc_status nngrpc_isolate_runner(void *arg, nngrpc_call *call,
    uint32_t method, bool reload, const uint8_t *body, size_t len,
    ProtobufCBinaryData *payload);

/* Adds the worker families to m, and relays the service's gauges to the
 * zygote, where the loaded state is (before the server starts; answers
 * within GAUGE_WAIT_MS or the last values read). 0 or an nng error. */
int nngrpc_isolate_add_metrics(nngrpc_isolate *iso, nngrpc_metrics *m);

/* True when the zygote died while the server ran (its supervisor then
 * logged it and sent this process SIGTERM: it drains and ends, since no
 * worker can be replaced any more). NULL: false. Any thread. */
bool nngrpc_isolate_lost(nngrpc_isolate *iso);

/* Ends the zygote and the workers (their sockets close; the zygote is
 * waited for) and frees iso. No runner may still run. NULL is a no-op. */
void nngrpc_isolate_free(nngrpc_isolate *iso);

#endif /* NNGRPC_RPC_ISOLATE_H */
