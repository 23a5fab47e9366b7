/*
 * Logging: one line per event on stderr, with a level filter, in text or
 * JSON lines, and an access log of one line per call.
 *
 * Safe from any thread: each line is formatted into a local buffer and
 * written with one write(2), so lines from different threads never mix.
 * A line is always one line: newlines and control characters in a message
 * or a field are escaped, in both formats. A line a worker writes while it
 * runs a call carries the call's request id.
 *
 * Text:  2026-11-25T21:50:27.123Z info listening on tcp://... request_id=r1
 * JSON:  {"ts":"2026-11-25T21:50:27.123Z","level":"info",
 *         "msg":"listening on tcp://...","request_id":"r1"}   (one line)
 *
 * Never log payloads, tokens or other secrets: nothing here takes a
 * payload, and callers must not format request or reply bodies, metadata
 * values other than the request id, or credentials into a message.
 *
 * nngrpc_serve() (serve.h) sets the level, format and access log from its
 * flags; a program that drives a server itself sets them here.
 */
#ifndef NNGRPC_LOG_H
#define NNGRPC_LOG_H

#include <stdbool.h>

#include <nngrpc/export.h>

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

/* Sets the most verbose level that is written (default INFO). Any
 * thread. */
NNGRPC_API void nngrpc_log_set_level(nngrpc_log_level level);

/* True when a line at this level would be written: test it before doing
 * work only a log line needs. */
NNGRPC_API bool nngrpc_log_enabled(nngrpc_log_level level);

/* Sets the line format for every thread (default NNGRPC_LOG_TEXT). */
NNGRPC_API void nngrpc_log_set_format(nngrpc_log_format format);

/*
 * Sets the access log (default NNGRPC_ACCESS_OFF). With
 * NNGRPC_ACCESS_SAMPLED each call is logged with probability sample_rate
 * (clamped to 0.0 .. 1.0; 0.0 logs none, 1.0 all), drawn from a cheap
 * thread-local PRNG; sample_rate is ignored by the other modes. Any thread
 * may call it at any time.
 */
NNGRPC_API void nngrpc_log_set_access(
    nngrpc_access_mode mode, double sample_rate);

/* Writes one line (a trailing newline is added). Never put a payload or a
 * secret in fmt's arguments (see the top of this file). */
NNGRPC_API void nngrpc_log(nngrpc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* NNGRPC_LOG_H */
