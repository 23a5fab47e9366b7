/*
 * hoteld: the server binary. Reads the configuration, registers the
 * services, starts the server, then waits in sigwait() for SIGINT or
 * SIGTERM and stops cleanly (exit 0). Every other thread is started with
 * those signals blocked, so only this thread ever sees them.
 *
 * Exit codes: 0 after a clean stop, 1 on a failure at run time, 2 for a
 * bad configuration or a listener that cannot start (bad URL, port in
 * use), always with one line on stderr saying why.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "config.h"
#include "log.h"
#include "nngrpc.h"
#include "testing_service.h"

extern char **environ;

int
main(int argc, char **argv)
{
	hoteld_config  cfg;
	nngrpc_server *server = NULL;
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

	/* Block before any thread starts: they all inherit the mask. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rv = nngrpc_server_open(&cfg.server, &server)) != 0) {
		fprintf(stderr, "hoteld: cannot create the server: %s\n",
		    nng_strerror(rv));
		return (1);
	}
	if (cfg.testing && (rv = testing_service_register(server)) != 0) {
		fprintf(stderr,
		    "hoteld: cannot register the testing "
		    "service: %s\n",
		    nng_strerror(rv));
		nngrpc_server_close(server);
		return (1);
	}
	if ((rv = nngrpc_server_start(server, err, sizeof(err))) != 0) {
		fprintf(stderr, "hoteld: %s\n", err);
		nngrpc_server_close(server);
		return (2);
	}
	nngrpc_log(NNGRPC_LOG_INFO, "hoteld ready: %d workers, queue %d",
	    cfg.server.workers, cfg.server.queue);

	sigwait(&stop_signals, &sig);
	nngrpc_log(NNGRPC_LOG_INFO, "%s: stopping",
	    sig == SIGINT ? "SIGINT" : "SIGTERM");
	nngrpc_server_close(server);
	nngrpc_log(NNGRPC_LOG_INFO, "stopped");
	return (0);
}
