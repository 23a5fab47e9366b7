/*
 * hoteld: the server binary. Reads the configuration, registers the
 * services, starts the server, then waits in sigwait() for SIGINT or
 * SIGTERM and stops cleanly (exit 0). Every other thread is started with
 * those signals blocked, so only this thread ever sees them.
 *
 * Unless --no-hotels, the hotel dataset (generated, or loaded from --data)
 * is built before anything listens, so a server that answers is ready.
 *
 * Exit codes: 0 after a clean stop, 1 on a failure at run time, 2 for a
 * bad configuration, a dataset that cannot be built (bad --data file) or
 * a listener that cannot start (bad URL, port in use), always with one
 * line on stderr saying why.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include <nngrpc/clock.h>
#include <nngrpc/nngrpc.h>

#include "config.h"
#include "engine/hotel.h"
#include "hotel_service.h"
#include "log.h"
#include "testing_service.h"

extern char **environ;

/* Builds the hotel dataset and logs how long it took. Returns 0, or the
 * exit code after one line on stderr. */
static int
load_hotels(const hoteld_config *cfg, hotel_service *svc)
{
	hotel_service_options opts = {
		.data = cfg->data,
		.hotels = cfg->hotels,
		.seed = cfg->seed,
	};
	int64_t start = nngrpc_now_ns();
	char    err[512];
	int     rv;

	if ((rv = hotel_service_load(svc, &opts, err, sizeof(err))) != 0) {
		fprintf(stderr, "hoteld: %s\n", err);
		return (rv == HOTEL_ENOMEM ? 1 : 2);
	}
	if (cfg->data != NULL) {
		nngrpc_log(NNGRPC_LOG_INFO,
		    "hotels: %zu loaded from %s in %lld ms",
		    hotel_service_count(svc), cfg->data,
		    (long long) ((nngrpc_now_ns() - start) / 1000000));
	} else {
		nngrpc_log(NNGRPC_LOG_INFO,
		    "hotels: %zu generated (seed %llu) in %lld ms",
		    hotel_service_count(svc), (unsigned long long) cfg->seed,
		    (long long) ((nngrpc_now_ns() - start) / 1000000));
	}
	return (0);
}

/* Methods that never block and take microseconds: run on the receiving
 * thread (see nngrpc_server_set_inline()). Search and Reload stay on the
 * workers: they can take milliseconds or seconds. */
static const char *const inline_methods[] = {
	"/nngrpc.testing.v1.Testing/Echo",
	"/nngrpc.testing.v1.Testing/Fail",
	"/hotel.v1.HotelSearch/GetHotel",
	"/hotel.v1.HotelSearch/Stats",
};

/* Registers the services; returns 0 or the exit code after a line on
 * stderr. */
static int
register_services(
    const hoteld_config *cfg, nngrpc_server *server, hotel_service *hotels)
{
	int rv;

	if (cfg->testing && (rv = testing_service_register(server)) != 0) {
		fprintf(stderr,
		    "hoteld: cannot register the testing service: %s\n",
		    nng_strerror(rv));
		return (1);
	}
	if (hotels != NULL
	    && ((rv = hotel_service_register(hotels, server)) != 0
	        || (rv = hotel_service_add_metrics(
	                hotels, nngrpc_server_metrics(server)))
	            != 0)) {
		fprintf(stderr,
		    "hoteld: cannot register the hotel service: %s\n",
		    nng_strerror(rv));
		return (1);
	}
	for (size_t i = 0;
	     i < sizeof(inline_methods) / sizeof(inline_methods[0]); i++) {
		/* NNG_ENOENT: that service is not served this time. */
		rv = nngrpc_server_set_inline(server, inline_methods[i], true);
		if (rv != 0 && rv != NNG_ENOENT) {
			fprintf(stderr, "hoteld: %s: %s\n", inline_methods[i],
			    nng_strerror(rv));
			return (1);
		}
	}
	return (0);
}

/* Reads the first line of path into buf as the auth token. Returns false
 * with a message in err when the file is unreadable or the token empty. */
static bool
read_token(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
	FILE  *f = fopen(path, "r");
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "--auth-token-file: cannot read %s: %s",
		    path, strerror(errno));
		return (false);
	}
	if (fgets(buf, (int) len, f) == NULL) {
		buf[0] = '\0';
	}
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	if (n == 0) {
		snprintf(
		    err, errlen, "--auth-token-file: %s has no token", path);
		return (false);
	}
	return (true);
}

/*
 * Graceful drain after the first SIGINT or SIGTERM: health turns
 * NOT_SERVING, new calls get UNAVAILABLE, calls already received finish.
 * Waits in slices so a second signal, or the drain timeout, ends the
 * process at once. Returns true when every call was answered.
 */
static bool
drain(nngrpc_server *server, const sigset_t *stop_signals, double timeout_s)
{
	const struct timespec no_wait = { 0, 0 };
	int64_t               left_ms = (int64_t) (timeout_s * 1000);

	for (;;) {
		int64_t slice = left_ms < 50 ? left_ms : 50;
		if (nngrpc_server_drain(server, slice) == 0) {
			return (true);
		}
		left_ms -= slice;
		if (sigtimedwait(stop_signals, NULL, &no_wait) > 0) {
			nngrpc_log(NNGRPC_LOG_WARN,
			    "second signal: exiting without waiting for "
			    "calls");
			return (false);
		}
		if (left_ms <= 0) {
			nngrpc_log(NNGRPC_LOG_WARN,
			    "drain timeout (%g s): exiting with calls still "
			    "running",
			    timeout_s);
			return (false);
		}
	}
}

int
main(int argc, char **argv)
{
	hoteld_config  cfg;
	nngrpc_server *server = NULL;
	hotel_service *hotels = NULL;
	char           token[1024];
	sigset_t       stop_signals;
	char           err[512];
	int            sig;
	int            rv;

	if (!hoteld_config_parse(
	        &cfg, argc, argv, environ, err, sizeof(err))) {
		fprintf(stderr, "hoteld: %s\n", err);
		return (2);
	}
	if (cfg.help) {
		hoteld_config_usage(stdout);
		return (0);
	}
	if (cfg.print_config) {
		hoteld_config_print(&cfg, stdout);
		return (0);
	}
	nngrpc_log_set_level(cfg.log_level);
	nngrpc_log_set_format(cfg.log_format);
	nngrpc_log_set_access(cfg.access_log, cfg.access_sample);
	if (cfg.auth_token_file != NULL) {
		if (!read_token(cfg.auth_token_file, token, sizeof(token), err,
		        sizeof(err))) {
			fprintf(stderr, "hoteld: %s\n", err);
			return (2);
		}
		cfg.server.auth_token = token;
	}

	/* Block before any thread starts: they all inherit the mask. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!cfg.no_hotels && hotel_service_alloc(&hotels) != 0) {
		fprintf(stderr, "hoteld: out of memory\n");
		return (1);
	}
	if ((rv = nngrpc_server_open(&cfg.server, &server)) != 0) {
		fprintf(stderr, "hoteld: cannot create the server: %s\n",
		    nng_strerror(rv));
		hotel_service_close(hotels);
		return (1);
	}
	if ((rv = register_services(&cfg, server, hotels)) != 0) {
		nngrpc_server_close(server);
		hotel_service_close(hotels);
		return (rv);
	}
	/* Listen first, then build the dataset: meanwhile health checks
	 * answer NOT_SERVING and calls UNAVAILABLE, as gRPC servers do while
	 * they start. */
	if (hotels != NULL) {
		nngrpc_server_set_serving(server, NULL, false);
	}
	if ((rv = nngrpc_server_start(server, err, sizeof(err))) != 0) {
		fprintf(stderr, "hoteld: %s\n", err);
		nngrpc_server_close(server);
		hotel_service_close(hotels);
		return (2);
	}
	if (hotels != NULL) {
		if ((rv = load_hotels(&cfg, hotels)) != 0) {
			nngrpc_server_close(server);
			hotel_service_close(hotels);
			return (rv);
		}
		nngrpc_server_set_serving(server, NULL, true);
	}
	nngrpc_log(NNGRPC_LOG_INFO, "hoteld ready: %d workers, queue %d",
	    cfg.server.workers, cfg.server.queue);

	sigwait(&stop_signals, &sig);
	nngrpc_log(NNGRPC_LOG_INFO, "%s: draining (up to %g s)",
	    sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.drain_timeout);
	if (!drain(server, &stop_signals, cfg.drain_timeout)) {
		/* Handlers may still run: leave without joining them. */
		_exit(1);
	}
	/* No handler runs once the server is closed: the engine can go. */
	nngrpc_server_close(server);
	hotel_service_close(hotels);
	nngrpc_log(NNGRPC_LOG_INFO, "stopped");
	return (0);
}
