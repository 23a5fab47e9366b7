/*
 * Logging, the library's side: what include/nngrpc/log.h offers every
 * program, plus parsing of the flag values, the per-thread request id and
 * the access lines the runtime writes. See the public header for the line
 * format and the rule on secrets.
 */
#ifndef NNGRPC_RPC_LOG_H
#define NNGRPC_RPC_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <nngrpc/log.h>

/* Longest request id kept by nngrpc_log_set_request_id(); longer ids are
 * truncated. */
#define NNGRPC_LOG_MAX_REQUEST_ID 128

/* Parses "error", "warn", "info" or "debug". Returns false on anything
 * else, leaving *levelp untouched. */
bool nngrpc_log_parse_level(const char *name, nngrpc_log_level *levelp);

/* Parses "text" or "json" (--log-format). Returns false on anything else,
 * leaving *formatp untouched. */
bool nngrpc_log_parse_format(const char *name, nngrpc_log_format *formatp);

/* Parses "off", "all" or "sampled". Returns false on anything else, leaving
 * *modep untouched. */
bool nngrpc_log_parse_access(const char *name, nngrpc_access_mode *modep);

/*
 * Sets the calling thread's request id: every line this thread logs while
 * it is set carries request_id=... (text) or "request_id":"..." (JSON).
 * Borrows id (copied, truncated to NNGRPC_LOG_MAX_REQUEST_ID bytes). NULL
 * or "" clears it. Thread-local: other threads are not affected. A worker
 * sets it when it takes a call and clears it when the call ends.
 */
void nngrpc_log_set_request_id(const char *id);

/* The calling thread's request id, or NULL when none is set. Valid until
 * the thread sets another one. */
const char *nngrpc_log_request_id(void);

/*
 * One access line for a finished call, when the access log is on and, if
 * sampled, this call is drawn. Written whatever the level (it has its own
 * switch), at level "info", with msg "access" and the fields method,
 * status (the code's name, e.g. "NOT_FOUND"), code, queue_us and run_us
 * (left out when < 0), request_id (when NULL, the thread's request id; left
 * out when there is none), peer and trace_id (left out when NULL). Borrows
 * every string; method, request_id and peer come from the client and are
 * escaped and truncated. It takes no payload, by design: never log one.
 */
void nngrpc_log_access(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer,
    const char *trace_id);

/* Draws whether the next call is logged (as nngrpc_log_access() does), so
 * a caller can skip work only the line needs (formatting the peer), then
 * write it with nngrpc_log_access_line(), which does not draw again. */
bool nngrpc_log_access_wanted(void);
void nngrpc_log_access_line(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer,
    const char *trace_id);

#endif /* NNGRPC_RPC_LOG_H */
