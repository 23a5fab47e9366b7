/*
 * Metrics a service adds to its server's /metrics (the ops HTTP endpoint,
 * Prometheus text format): gauges and counters read from the service's
 * own state when /metrics is rendered, beside the runtime's per-method
 * call counters, latency histograms and process gauges.
 *
 *   static double hotels(void *arg) { return (engine_count(arg)); }
 *   nngrpc_metrics_add_gauge(nngrpc_server_metrics(server),
 *       "hotel_dataset_hotels", "Hotels being served.", hotels, engine);
 *
 * Register before the server starts (in nngrpc_serve()'s setup callback).
 */
#ifndef NNGRPC_METRICS_H
#define NNGRPC_METRICS_H

#include <nngrpc/export.h>

typedef struct nngrpc_metrics nngrpc_metrics;

/* Most gauges plus counter functions one registry holds (the runtime's
 * own take 5). */
#define NNGRPC_METRICS_MAX_FNS 64

/*
 * A gauge read at render time: fn(arg) returns the value; fn is called on
 * the rendering thread (one of NNG's HTTP threads) and must be
 * thread-safe and quick. Borrows name and help (static strings; name must
 * be a valid Prometheus metric name, help one line). Before the server
 * starts only. Returns 0, NNG_EINVAL for a bad name or NULL fn, NNG_EEXIST
 * for a name already added, NNG_ENOMEM when NNGRPC_METRICS_MAX_FNS are
 * already added.
 */
NNGRPC_API int nngrpc_metrics_add_gauge(nngrpc_metrics *m, const char *name,
    const char *help, double (*fn)(void *), void *arg);

/* Same as nngrpc_metrics_add_gauge() for a monotonically increasing
 * counter read from elsewhere (e.g. dataset reloads); by Prometheus
 * convention its name should end in _total. */
NNGRPC_API int nngrpc_metrics_add_counter_fn(nngrpc_metrics *m,
    const char *name, const char *help, double (*fn)(void *), void *arg);

#endif /* NNGRPC_METRICS_H */
