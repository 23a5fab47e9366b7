/*
 * Metrics: per-method call counters and latency histograms, byte counters,
 * process gauges and gauges/counters read from elsewhere, rendered in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Gauges and counter functions from elsewhere are added through the public
 * include/nngrpc/metrics.h.
 *
 * Threads: methods, gauges and counter functions are registered on one
 * thread before the server starts. After that nngrpc_metrics_call_done()
 * is called from any number of worker threads at once and is lock-free
 * (relaxed atomics only); nngrpc_metrics_render() may run on any thread at
 * the same time. A render is not an atomic snapshot: a call recorded during
 * a render may be counted in some families and not yet in others, but every
 * histogram's _count always equals its +Inf bucket.
 *
 * Names: every family is prefixed nngrpc_ except the standard process_*
 * gauges. Families:
 *   nngrpc_calls_total{method,code}          counter, code by name ("OK")
 *   nngrpc_call_queue_seconds{method}        histogram
 *   nngrpc_call_run_seconds{method}          histogram
 *   nngrpc_request_bytes_total{method}       counter
 *   nngrpc_response_bytes_total{method}      counter
 *   process_resident_memory_bytes, process_virtual_memory_bytes,
 *   process_cpu_seconds_total, process_open_fds, process_start_time_seconds
 *   and every gauge / counter function added.
 * Calls whose method is unknown or undecodable carry method="unknown".
 */
#ifndef NNGRPC_RPC_METRICS_H
#define NNGRPC_RPC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nngrpc/metrics.h>

/* Most methods one registry holds; nngrpc_metrics_add_method() fails
 * beyond it. */
#define NNGRPC_METRICS_MAX_METHODS 1024
/* The Content-Type of what nngrpc_metrics_render() produces. */
#define NNGRPC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Returns new: *mp, freed with nngrpc_metrics_free(). 0 or NNG_ENOMEM.
 * Records the process start time. */
int nngrpc_metrics_alloc(nngrpc_metrics **mp);

/* Frees the registry. NULL is a no-op. No thread may still use it. */
void nngrpc_metrics_free(nngrpc_metrics *m);

/*
 * Registers a method before the server starts; returns its index (>= 0),
 * or -1 when out of memory or when NNGRPC_METRICS_MAX_METHODS are already
 * registered. Borrows full_name ("/pkg.Service/Method"; copied). Adding a
 * name already registered returns its existing index.
 */
int nngrpc_metrics_add_method(nngrpc_metrics *m, const char *full_name);

/* Index of a registered method, or -1. Thread-safe. */
int nngrpc_metrics_find_method(const nngrpc_metrics *m, const char *full_name);

/*
 * One finished call, from any worker thread, lock-free (atomics).
 * method: an index from nngrpc_metrics_add_method(), or -1 when the method
 * is unknown/undecodable (label method="unknown"; so is any index out of
 * range). code: a status code 0..16 (anything else counts as UNKNOWN).
 * queue_ns, run_ns: time waiting for a worker and running; < 0 when not
 * applicable (e.g. rejected before queueing), and then not observed.
 * bytes_in, bytes_out: request and reply envelope sizes. m NULL is a no-op,
 * so a server without metrics needs no check.
 */
void nngrpc_metrics_call_done(nngrpc_metrics *m, int method, int code,
    int64_t queue_ns, int64_t run_ns, size_t bytes_in, size_t bytes_out);

/*
 * Adds families rendered by fn(arg) (one at most): it returns new text in
 * the exposition format (malloc'd, freed here), or NULL to skip; called on
 * the rendering thread, after the gauges. Before the server starts.
 * Returns 0 or NNG_EBUSY when one is set already.
 */
int nngrpc_metrics_add_text(
    nngrpc_metrics *m, char *(*fn)(void *arg), void *arg);

/*
 * Gauges and counter functions added from now on are the service's (the
 * server calls this once its own are added): under process isolation their
 * values come from where the service's state lives, through the relay.
 */
void nngrpc_metrics_mark_service_fns(nngrpc_metrics *m);

/*
 * Where the service's gauges are read (process isolation): at render time
 * fn(arg, values, n) fills the n values of the service's functions, in the
 * order they were added, and returns true; false leaves them to be read
 * here. One relay at most; before the server starts.
 */
void nngrpc_metrics_set_relay(nngrpc_metrics *m,
    bool (*fn)(void *arg, double *values, size_t n), void *arg);

/* Reads the service's functions here into values (n at most); returns how
 * many there are. What a relay's other end runs. */
size_t nngrpc_metrics_read_service_fns(
    nngrpc_metrics *m, double *values, size_t n);

/*
 * Renders every family in the Prometheus text exposition format 0.0.4
 * (NNGRPC_METRICS_CONTENT_TYPE). Returns new: *textp (malloc'd,
 * NUL-terminated, freed with free()) and its length without the NUL in
 * *lenp. Returns 0 or NNG_ENOMEM. Thread-safe.
 */
int nngrpc_metrics_render(nngrpc_metrics *m, char **textp, size_t *lenp);

#endif /* NNGRPC_RPC_METRICS_H */
