/*
 * Logging: one line per event on stderr, with a level filter.
 *
 * Safe from any thread: each line is formatted into a local buffer and
 * written with one write(2), so lines from different threads never mix.
 */
#ifndef NNGRPC_LOG_H
#define NNGRPC_LOG_H

#include <stdbool.h>

typedef enum nngrpc_log_level {
	NNGRPC_LOG_ERROR,
	NNGRPC_LOG_WARN,
	NNGRPC_LOG_INFO,
	NNGRPC_LOG_DEBUG,
} nngrpc_log_level;

/* Sets the most verbose level that is written (default INFO). */
void nngrpc_log_set_level(nngrpc_log_level level);

/* Parses "error", "warn", "info" or "debug". Returns false on anything
 * else, leaving *levelp untouched. */
bool nngrpc_log_parse_level(const char *name, nngrpc_log_level *levelp);

/* True when a line at this level would be written: test it before doing
 * work only a log line needs. */
bool nngrpc_log_enabled(nngrpc_log_level level);

/* Writes one line (a trailing newline is added). */
void nngrpc_log(nngrpc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* NNGRPC_LOG_H */
