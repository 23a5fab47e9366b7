/*
 * mhd_echo_server: the HTTP-API anchor. A libmicrohttpd server, one thread
 * per connection (as a Python client with one keep-alive connection per
 * thread uses it):
 *
 *   POST /echo          answers 200 with the request body
 *   POST /sleep?ms=N    sleeps N ms in the connection's thread, answers 200
 *
 *   mhd_echo_server --port N
 *
 * Prints "ready" once it listens; SIGINT or SIGTERM stop it (exit 0).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#define MAX_BODY (64u * 1024 * 1024)

typedef struct body {
	char  *b_data;
	size_t b_len;
	size_t b_cap;
	bool   b_too_big;
} body;

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned int status, char *data, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result      ret;

	resp = MHD_create_response_from_buffer(len, data,
	    data != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (resp == NULL) {
		free(data);
		return (MHD_NO);
	}
	MHD_add_response_header(
	    resp, "Content-Type", "application/octet-stream");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return (ret);
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_size, void **con_cls)
{
	body *b = *con_cls;

	(void) cls;
	(void) version;
	if (strcmp(method, "POST") != 0
	    || (strcmp(url, "/echo") != 0 && strcmp(url, "/sleep") != 0)) {
		return (reply(conn, MHD_HTTP_NOT_FOUND, NULL, 0));
	}
	if (b == NULL) { /* first call: headers only */
		if ((b = calloc(1, sizeof(*b))) == NULL) {
			return (MHD_NO);
		}
		*con_cls = b;
		return (MHD_YES);
	}
	if (*upload_size > 0) { /* a chunk of the body */
		if (b->b_len + *upload_size > MAX_BODY) {
			b->b_too_big = true;
		} else {
			if (b->b_len + *upload_size > b->b_cap) {
				size_t cap = b->b_cap ? b->b_cap : 4096;
				char  *nd;
				while (cap < b->b_len + *upload_size) {
					cap *= 2;
				}
				if ((nd = realloc(b->b_data, cap)) == NULL) {
					return (MHD_NO);
				}
				b->b_data = nd;
				b->b_cap = cap;
			}
			memcpy(
			    b->b_data + b->b_len, upload_data, *upload_size);
			b->b_len += *upload_size;
		}
		*upload_size = 0;
		return (MHD_YES);
	}
	/* Body complete. */
	if (b->b_too_big) {
		return (reply(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, 0));
	}
	if (strcmp(url, "/sleep") == 0) {
		const char *ms = MHD_lookup_connection_value(
		    conn, MHD_GET_ARGUMENT_KIND, "ms");
		long            n = ms != NULL ? atol(ms) : 0;
		struct timespec ts
		    = { .tv_sec = n / 1000, .tv_nsec = (n % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		return (reply(conn, MHD_HTTP_OK, NULL, 0));
	}
	/* The response takes the buffer. */
	{
		char  *data = b->b_data;
		size_t len = b->b_len;
		b->b_data = NULL;
		b->b_len = b->b_cap = 0;
		if (data == NULL) {
			return (reply(conn, MHD_HTTP_OK, NULL, 0));
		}
		return (reply(conn, MHD_HTTP_OK, data, len));
	}
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	body *b = *con_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (b != NULL) {
		free(b->b_data);
		free(b);
		*con_cls = NULL;
	}
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	sigset_t           stop;
	int                port = 0, sig;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			port = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: mhd_echo_server --port N\n");
			return (2);
		}
	}
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "mhd_echo_server: need --port 1..65535\n");
		return (2);
	}
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in addr;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION
	        | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
	    (uint16_t) port, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *) &addr, MHD_OPTION_NOTIFY_COMPLETED, completed,
	    NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
	    MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "mhd_echo_server: cannot listen on port %d\n",
		    port);
		return (2);
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&stop, &sig);
	MHD_stop_daemon(d);
	return (0);
}
