/*
 * Logging to stderr. Lines look like
 *   2026-11-25T21:50:27.123Z INFO listening on tcp://127.0.0.1:5555
 * The level is an atomic so any thread may read it while main sets it.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = NNGRPC_LOG_INFO;

static const char *const level_names[] = {
	[NNGRPC_LOG_ERROR] = "error",
	[NNGRPC_LOG_WARN] = "warn",
	[NNGRPC_LOG_INFO] = "info",
	[NNGRPC_LOG_DEBUG] = "debug",
};

void
nngrpc_log_set_level(nngrpc_log_level level)
{
	atomic_store(&log_level, (int)level);
}

bool
nngrpc_log_parse_level(const char *name, nngrpc_log_level *levelp)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*levelp = (nngrpc_log_level)i;
			return (true);
		}
	}
	return (false);
}

bool
nngrpc_log_enabled(nngrpc_log_level level)
{
	return ((int)level <= atomic_load(&log_level));
}

void
nngrpc_log(nngrpc_log_level level, const char *fmt, ...)
{
	char           line[2048];
	struct timeval tv;
	struct tm      tm;
	size_t         n;
	va_list        ap;
	int            w;

	if (!nngrpc_log_enabled(level)) {
		return;
	}
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	w = snprintf(line + n, sizeof(line) - n, ".%03dZ %s ",
	    (int)(tv.tv_usec / 1000), level_names[level]);
	n += (size_t)w;
	va_start(ap, fmt);
	w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (w < 0) {
		w = 0;
	}
	n += (size_t)w;
	if (n > sizeof(line) - 2) {
		n = sizeof(line) - 2; /* truncated: keep the newline */
	}
	line[n++] = '\n';
	/* One write per line; a short write to stderr is not worth a retry. */
	(void)!write(STDERR_FILENO, line, n);
}
