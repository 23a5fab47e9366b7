/*
 * Logging: one line per event on stderr, with a level filter, in text or
 * JSON lines, an optional per-thread request id, and an access log.
 *
 * Safe from any thread: each line is formatted into a local buffer and
 * written with one write(2), so lines from different threads never mix.
 * A line is always one line: newlines and control characters in a message
 * or a field are escaped, in both formats.
 *
 * Text:  2026-11-25T21:50:27.123Z info listening on tcp://... request_id=r1
 * JSON:  {"ts":"2026-11-25T21:50:27.123Z","level":"info",
 *         "msg":"listening on tcp://...","request_id":"r1"}   (one line)
 *
 * Never log payloads, tokens or other secrets: nothing here takes a
 * payload, and callers must not format request or reply bodies, metadata
 * values other than the request id, or credentials into a message.
 */
#ifndef NNGRPC_LOG_H
#define NNGRPC_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum nngrpc_log_level {
	NNGRPC_LOG_ERROR,
	NNGRPC_LOG_WARN,
	NNGRPC_LOG_INFO,
	NNGRPC_LOG_DEBUG,
} nngrpc_log_level;

typedef enum nngrpc_log_format {
	NNGRPC_LOG_TEXT, /* default */
	NNGRPC_LOG_JSON, /* one JSON object per line */
} nngrpc_log_format;

typedef enum nngrpc_access_mode {
	NNGRPC_ACCESS_OFF,     /* default: no access lines */
	NNGRPC_ACCESS_ALL,     /* one line per call */
	NNGRPC_ACCESS_SAMPLED, /* a random fraction of the calls */
} nngrpc_access_mode;

/* Longest request id kept by nngrpc_log_set_request_id(); longer ids are
 * truncated. */
#define NNGRPC_LOG_MAX_REQUEST_ID 128

/* Sets the most verbose level that is written (default INFO). */
void nngrpc_log_set_level(nngrpc_log_level level);

/* Parses "error", "warn", "info" or "debug". Returns false on anything
 * else, leaving *levelp untouched. */
bool nngrpc_log_parse_level(const char *name, nngrpc_log_level *levelp);

/* True when a line at this level would be written: test it before doing
 * work only a log line needs. */
bool nngrpc_log_enabled(nngrpc_log_level level);

/* Sets the line format for every thread (default NNGRPC_LOG_TEXT). */
void nngrpc_log_set_format(nngrpc_log_format format);

/* Parses "text" or "json" (--log-format). Returns false on anything else,
 * leaving *formatp untouched. */
bool nngrpc_log_parse_format(const char *name, nngrpc_log_format *formatp);

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

/* Writes one line (a trailing newline is added). Never put a payload or a
 * secret in fmt's arguments (see the top of this file). */
void nngrpc_log(nngrpc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Sets the access log (default NNGRPC_ACCESS_OFF). With
 * NNGRPC_ACCESS_SAMPLED each call is logged with probability sample_rate
 * (clamped to 0.0 .. 1.0; 0.0 logs none, 1.0 all), drawn from a cheap
 * thread-local PRNG; sample_rate is ignored by the other modes. Any thread
 * may call it at any time.
 */
void nngrpc_log_set_access(nngrpc_access_mode mode, double sample_rate);

/* Parses "off", "all" or "sampled". Returns false on anything else, leaving
 * *modep untouched. */
bool nngrpc_log_parse_access(const char *name, nngrpc_access_mode *modep);

/*
 * One access line for a finished call, when the access log is on and, if
 * sampled, this call is drawn. Written whatever the level (it has its own
 * switch), at level "info", with msg "access" and the fields method,
 * status (the code's name, e.g. "NOT_FOUND"), code, queue_us and run_us
 * (left out when < 0), request_id (when NULL, the thread's request id; left
 * out when there is none) and peer (left out when NULL). Borrows every
 * string; method, request_id and peer come from the client and are escaped
 * and truncated. It takes no payload, by design: never log one.
 */
void nngrpc_log_access(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer);

/* Draws whether the next call is logged (as nngrpc_log_access() does), so
 * a caller can skip work only the line needs (formatting the peer), then
 * write it with nngrpc_log_access_line(), which does not draw again. */
bool nngrpc_log_access_wanted(void);
void nngrpc_log_access_line(const char *method, int code, int64_t queue_us,
    int64_t run_us, const char *request_id, const char *peer);

#endif /* NNGRPC_LOG_H */
