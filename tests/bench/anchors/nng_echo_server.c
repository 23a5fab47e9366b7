/*
 * nng_echo_server: the transport's floor. A REP socket with N contexts
 * (nng_ctx + nng_aio each) that sends every message straight back from
 * the aio callback: no envelope, no queue, no worker threads. Whatever
 * nngrpc adds on top of NNG is the difference against this server.
 *
 *   nng_echo_server --listen URL [--listen URL...] [--contexts N]
 *
 * Prints "ready" on stdout once it listens; SIGINT or SIGTERM stop it
 * (exit 0). Bench anchor: tests/bench/run_bench.py starts it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#define MAX_LISTEN 8

typedef enum { ECHO_RECV, ECHO_SEND } echo_state;

typedef struct echo {
	nng_ctx    e_ctx;
	nng_aio   *e_aio;
	echo_state e_state;
} echo;

static void
echo_cb(void *arg)
{
	echo *e = arg;
	int   rv = nng_aio_result(e->e_aio);

	if (e->e_state == ECHO_SEND && rv != 0) {
		/* Not sent (peer gone): the message is still ours. */
		nng_msg_free(nng_aio_get_msg(e->e_aio));
		nng_aio_set_msg(e->e_aio, NULL);
	}
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return;
	}
	if (e->e_state == ECHO_RECV && rv == 0) {
		/* The received message goes back as is. */
		e->e_state = ECHO_SEND;
		nng_ctx_send(e->e_ctx, e->e_aio);
		return;
	}
	e->e_state = ECHO_RECV;
	nng_ctx_recv(e->e_ctx, e->e_aio);
}

static void
fatal(const char *what, int rv)
{
	fprintf(stderr, "nng_echo_server: %s: %s\n", what, nng_strerror(rv));
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *urls[MAX_LISTEN];
	int         n_urls = 0;
	int         contexts = 64;
	nng_socket  sock;
	echo       *echoes;
	sigset_t    stop;
	int         sig, rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc
		    && n_urls < MAX_LISTEN) {
			urls[n_urls++] = argv[++i];
		} else if (strcmp(argv[i], "--contexts") == 0
		    && i + 1 < argc) {
			contexts = atoi(argv[++i]);
		} else {
			fprintf(stderr,
			    "usage: nng_echo_server --listen URL... "
			    "[--contexts N]\n");
			return (2);
		}
	}
	if (n_urls == 0 || contexts < 1) {
		fprintf(stderr,
		    "nng_echo_server: need --listen URL and "
		    "--contexts >= 1\n");
		return (2);
	}

	/* Only main sees the stop signals: NNG's threads inherit the mask. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rv = nng_rep0_open(&sock)) != 0) {
		fatal("rep0_open", rv);
	}
	/* No receive limit: the bench sends up to a few MiB. */
	if ((rv = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0)) != 0) {
		fatal("recv-size-max", rv);
	}
	if ((echoes = calloc((size_t) contexts, sizeof(*echoes))) == NULL) {
		fatal("contexts", NNG_ENOMEM);
	}
	for (int i = 0; i < contexts; i++) {
		if ((rv = nng_ctx_open(&echoes[i].e_ctx, sock)) != 0
		    || (rv = nng_aio_alloc(
		            &echoes[i].e_aio, echo_cb, &echoes[i]))
		        != 0) {
			fatal("contexts", rv);
		}
		echoes[i].e_state = ECHO_RECV;
		nng_ctx_recv(echoes[i].e_ctx, echoes[i].e_aio);
	}
	for (int i = 0; i < n_urls; i++) {
		if ((rv = nng_listen(sock, urls[i], NULL, 0)) != 0) {
			fprintf(stderr, "nng_echo_server: %s: %s\n", urls[i],
			    nng_strerror(rv));
			return (2);
		}
	}
	printf("ready\n");
	fflush(stdout);

	sigwait(&stop, &sig);
	nng_close(sock);
	for (int i = 0; i < contexts; i++) {
		nng_aio_free(echoes[i].e_aio);
	}
	free(echoes);
	return (0);
}
