/*
 * The smallest program against an installed libnngrpc: it includes only
 * <nngrpc/nngrpc.h>, links with what `pkg-config nngrpc` says, serves the
 * built-in services on argv[1], writes "ready" and stops when stdin
 * closes. tests/lib/test_install.py builds it against a fresh install.
 */
#include <stdio.h>

#include <nngrpc/nngrpc.h>

int
main(int argc, char **argv)
{
	nngrpc_server_config cfg;
	nngrpc_server       *server;
	char                 err[256];
	int                  rv;

	if (argc != 2) {
		fprintf(stderr, "usage: minimal_server URL\n");
		return (2);
	}
	nngrpc_server_config_init(&cfg);
	cfg.listen[0] = argv[1];
	cfg.n_listen = 1;
	cfg.workers = 2;
	if ((rv = nngrpc_server_open(&cfg, &server)) != 0) {
		fprintf(stderr, "open: %s\n", nng_strerror(rv));
		return (1);
	}
	if ((rv = nngrpc_server_start(server, err, sizeof(err))) != 0) {
		fprintf(stderr, "start: %s\n", err);
		nngrpc_server_close(server);
		return (1);
	}
	printf("ready %s\n", nngrpc_status_name(NNGRPC_OK));
	fflush(stdout);
	while (getchar() != EOF) { }
	nngrpc_server_close(server);
	return (0);
}
