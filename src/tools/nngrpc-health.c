/*
 * nngrpc-health: ask an nngrpc server whether it is serving, for container
 * health checks and load balancers (like grpc_health_probe).
 *
 *   nngrpc-health [--timeout-ms N] [--service NAME] [URL]
 *
 * Calls /nngrpc.health.v1.Health/Check (proto/nngrpc/health/v1) over a
 * libnng REQ socket with the nngrpc envelope (proto/nngrpc/v1/rpc.proto),
 * packed with protobuf-c; the answer is read with the runtime's envelope
 * scan (src/rpc/wire.h), and status names come from its status table.
 *
 * Exit 0 when the answer is SERVING (and "status: SERVING" on stdout);
 * exit 1 otherwise, with one line on stderr saying why: the status code
 * name and message of a failed call (UNIMPLEMENTED while the server has
 * no health service), the serving state (NOT_SERVING), or the transport
 * error (connection refused, timed out). Bad arguments exit 1 too: Docker
 * reserves exit code 2 of a HEALTHCHECK command.
 *
 * Without URL: $NNGRPC_HEALTH_URL, else the first URL of $NNGRPC_LISTEN
 * (hoteld's own variable) with a wildcard host (0.0.0.0, *, [::], empty)
 * replaced by loopback, else tcp://127.0.0.1:5555. So a container's
 * HEALTHCHECK follows the port the server was told to listen on.
 *
 * The whole probe (name resolution, connect, call) is bounded by
 * --timeout-ms: the call's own deadline is sent to the server, and an
 * interval timer ends the process if connecting hangs.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <nngrpc/status.h>

#include "nngrpc/health/v1/health.pb-c.h"
#include "nngrpc/v1/rpc.pb-c.h"
#include "wire.h"

#define PROG            "nngrpc-health"
#define CHECK_METHOD    "/nngrpc.health.v1.Health/Check"
#define DEFAULT_URL     "tcp://127.0.0.1:5555"
#define DEFAULT_TIMEOUT 1000

/* protobuf-c's names for the health messages are long. */
typedef Nngrpc__Health__V1__HealthCheckRequest  check_req;
typedef Nngrpc__Health__V1__HealthCheckResponse check_resp;
#define check_req_size                                                        \
	nngrpc__health__v1__health_check_request__get_packed_size
#define check_req_pack nngrpc__health__v1__health_check_request__pack
#define check_resp_unpack(len, data)                                          \
	nngrpc__health__v1__health_check_response__unpack(NULL, len, data)
#define check_resp_free(m)                                                    \
	nngrpc__health__v1__health_check_response__free_unpacked(m, NULL)
#define SERVING                                                               \
	NNGRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define SERVING_STATUS_DESCRIPTOR                                             \
	nngrpc__health__v1__health_check_response__serving_status__descriptor

/* What the backstop timer says when it fires: prepared before it is
 * armed, since a signal handler may only write(2) and _exit(2). */
static char alarm_line[768];

static void
on_alarm(int sig)
{
	ssize_t n;
	(void) sig;
	n = write(STDERR_FILENO, alarm_line, strlen(alarm_line));
	(void) n;
	_exit(1);
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: " PROG " [--timeout-ms N] [--service NAME] [URL]\n"
	    "  Calls " CHECK_METHOD " on URL; exit 0 when SERVING,\n"
	    "  1 otherwise (NOT_SERVING, error status, unreachable), with\n"
	    "  one line on stderr saying why.\n"
	    "  --timeout-ms N   bound on the whole probe (default %d)\n"
	    "  --service NAME   service to ask about (default \"\": the "
	    "server)\n"
	    "  URL              tcp://HOST:PORT or ipc:///PATH; default\n"
	    "                   $NNGRPC_HEALTH_URL, else the first of\n"
	    "                   $NNGRPC_LISTEN with a wildcard host made\n"
	    "                   loopback, else " DEFAULT_URL "\n",
	    DEFAULT_TIMEOUT);
}

/*
 * The URL to probe when none is given: see the top of the file. Writes
 * into buf (size len) and returns it.
 */
static const char *
default_url(char *buf, size_t len)
{
	const char *v = getenv("NNGRPC_HEALTH_URL");
	const char *scheme_end;
	const char *host;
	const char *port;
	const char *loopback;
	char        copy[512];
	size_t      n;

	if (v != NULL && *v != '\0') {
		return (v);
	}
	v = getenv("NNGRPC_LISTEN");
	if (v == NULL || *v == '\0') {
		return (DEFAULT_URL);
	}
	n = strcspn(v, ",");
	if (n >= len || n >= sizeof(copy)) {
		return (DEFAULT_URL);
	}
	memcpy(buf, v, n);
	buf[n] = '\0';
	scheme_end = strstr(buf, "://");
	if (scheme_end == NULL || strncmp(buf, "tcp", 3) != 0) {
		return (buf); /* ipc://, or let nng say what is wrong */
	}
	host = scheme_end + 3;
	port = strrchr(host, ':');
	if (port == NULL) {
		return (buf);
	}
	if (port == host || strncmp(host, "0.0.0.0:", 8) == 0
	    || strncmp(host, "*:", 2) == 0) {
		loopback = "127.0.0.1";
	} else if (strncmp(host, "[::]:", 5) == 0) {
		loopback = "[::1]";
	} else {
		return (buf);
	}
	snprintf(copy, sizeof(copy), "%s", buf);
	snprintf(buf, len, "%.*s%s%s", (int) (host - buf), copy, loopback,
	    copy + (port - buf));
	return (buf);
}

/* A transport error in words a person on call understands. */
static const char *
transport_error(int rv)
{
	switch (rv) {
	case NNG_ECONNREFUSED:
		return ("connection refused");
	case NNG_ETIMEDOUT:
		return ("timed out");
	case NNG_EADDRINVAL:
		return ("invalid address");
	case NNG_ENOTSUP:
		return ("transport not supported");
	case NNG_EPROTO:
		return ("protocol error (not an nngrpc server?)");
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECLOSED:
		return ("connection closed by the server");
	case NNG_EUNREACHABLE:
		return ("host unreachable");
	default:
		return (nng_strerror(rv));
	}
}

/* Parses --timeout-ms; says what is wrong on stderr. */
static bool
parse_ms(const char *s, int *out)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 3600000) {
		fprintf(stderr,
		    PROG ": --timeout-ms: must be an integer from 1 to "
		         "3600000, got '%s'\n",
		    s);
		return (false);
	}
	*out = (int) v;
	return (true);
}

/* The status code's name ("NOT_FOUND"), or "UNKNOWN_CODE". */
static const char *
status_name(int32_t code)
{
	const char *name = nngrpc_status_name(code);
	return (name != NULL ? name : "UNKNOWN_CODE");
}

/* Arms (ms > 0) or disarms (ms == 0) the probe's deadline timer. */
static void
set_alarm(int ms)
{
	struct itimerval itv;

	memset(&itv, 0, sizeof(itv));
	itv.it_value.tv_sec = ms / 1000;
	itv.it_value.tv_usec = (ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &itv, NULL);
}

/* Sends the Check request on a connected socket; returns its answer
 * (new, freed by the caller) or NULL after saying why on stderr. */
static nng_msg *
call_check(nng_socket sock, const char *url, const char *service,
    int timeout_ms, int64_t start)
{
	check_req in = NNGRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Nngrpc__V1__Request req = NNGRPC__V1__REQUEST__INIT;
	uint8_t             payload[1024];
	nng_msg            *msg;
	int64_t             left;
	int                 rv;

	left = timeout_ms - (now_ms() - start);
	if (left < 1) {
		left = 1;
	}
	in.service = (char *) service;
	if (check_req_size(&in) > sizeof(payload)) {
		fprintf(stderr, PROG ": --service: name too long\n");
		return (NULL);
	}
	req.method = CHECK_METHOD;
	req.timeout_us = (uint64_t) left * 1000;
	req.payload.len = check_req_pack(&in, payload);
	req.payload.data = payload;
	if ((rv = nng_msg_alloc(
	         &msg, nngrpc__v1__request__get_packed_size(&req)))
	    != 0) {
		fprintf(stderr, PROG ": %s\n", nng_strerror(rv));
		return (NULL);
	}
	nngrpc__v1__request__pack(&req, nng_msg_body(msg));

	nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, (nng_duration) left);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, (nng_duration) left);
	if ((rv = nng_sendmsg(sock, msg, 0)) != 0) {
		set_alarm(0); /* this line says why, not the timer's too */
		nng_msg_free(msg);
		fprintf(stderr, PROG ": %s: cannot send: %s\n", url,
		    transport_error(rv));
		return (NULL);
	}
	if ((rv = nng_recvmsg(sock, &msg, 0)) != 0) {
		set_alarm(0);
		if (rv == NNG_ETIMEDOUT) {
			fprintf(stderr, PROG ": %s: no answer within %d ms\n",
			    url, timeout_ms);
		} else {
			fprintf(stderr, PROG ": %s: %s\n", url,
			    transport_error(rv));
		}
		return (NULL);
	}
	return (msg);
}

/* Reads the answer: 0 for SERVING, else 1 after saying why on stderr. */
static int
judge(nng_msg *msg, const char *url, const char *service)
{
	nngrpc_wire_response resp;
	check_resp          *check;
	int                  exit_code = 1;

	if (!nngrpc_wire_scan_response(
	        nng_msg_body(msg), nng_msg_len(msg), &resp)) {
		fprintf(stderr,
		    PROG ": %s: undecodable response envelope (%zu bytes)\n",
		    url, nng_msg_len(msg));
		return (1);
	}
	if (resp.code != 0) {
		if (resp.message_len == 0) {
			resp.message = "(no message)";
			resp.message_len = strlen(resp.message);
		}
		fprintf(stderr, PROG ": %s: %s (%" PRId32 "): %.*s\n", url,
		    status_name(resp.code), resp.code, (int) resp.message_len,
		    resp.message);
		return (1);
	}
	check = check_resp_unpack(resp.payload_len, resp.payload);
	if (check == NULL) {
		fprintf(stderr,
		    PROG ": %s: undecodable HealthCheckResponse (%zu bytes)\n",
		    url, resp.payload_len);
	} else if (check->status == SERVING) {
		printf("status: SERVING\n");
		exit_code = 0;
	} else {
		const ProtobufCEnumValue *ev
		    = protobuf_c_enum_descriptor_get_value(
		        &SERVING_STATUS_DESCRIPTOR, check->status);
		fprintf(stderr, PROG ": %s: service \"%s\" is %s\n", url,
		    service, ev != NULL ? ev->name : "in an unknown state");
	}
	check_resp_free(check);
	return (exit_code);
}

/* What the command line asks for. */
typedef struct probe_args {
	int         timeout_ms;
	const char *service;
	const char *url; /* NULL: the default (see default_url()) */
} probe_args;

/* Parses argv into *pa. Returns -1 to go on, or the exit code (0 after
 * --help, 1 after a line on stderr). */
static int
parse_args(int argc, char **argv, probe_args *pa)
{
	*pa = (probe_args) { .timeout_ms = DEFAULT_TIMEOUT, .service = "" };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return (0);
		} else if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc) {
			if (!parse_ms(argv[++i], &pa->timeout_ms)) {
				return (1);
			}
		} else if (strncmp(a, "--timeout-ms=", 13) == 0) {
			if (!parse_ms(a + 13, &pa->timeout_ms)) {
				return (1);
			}
		} else if (strcmp(a, "--service") == 0 && i + 1 < argc) {
			pa->service = argv[++i];
		} else if (strncmp(a, "--service=", 10) == 0) {
			pa->service = a + 10;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr,
			    PROG ": unknown or incomplete option '%s' (see "
			         "--help)\n",
			    a);
			return (1);
		} else if (pa->url == NULL) {
			pa->url = a;
		} else {
			fprintf(stderr,
			    PROG ": one URL only, got '%s' too (see --help)\n",
			    a);
			return (1);
		}
	}
	return (-1);
}

/* Dials url and asks, under the alarm main armed, which it disarms as soon
 * as it has an outcome to print: one line says why, never two.
 * Returns the exit code. */
static int
probe(const probe_args *pa, const char *url, int64_t start)
{
	nng_socket sock;
	nng_msg   *msg;
	int        rv;
	int        exit_code = 1;

	if ((rv = nng_req0_open(&sock)) != 0) {
		fprintf(stderr, PROG ": cannot open a REQ socket: %s\n",
		    nng_strerror(rv));
		return (1);
	}
	/* One attempt: no automatic resend (a resend is a second call). */
	nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 64 * 1024);
	if ((rv = nng_dial(sock, url, NULL, 0)) != 0) {
		set_alarm(0);
		fprintf(stderr, PROG ": %s: %s\n", url, transport_error(rv));
	} else {
		snprintf(alarm_line, sizeof(alarm_line),
		    PROG ": %s: no answer within %d ms\n", url,
		    pa->timeout_ms);
		msg = call_check(
		    sock, url, pa->service, pa->timeout_ms, start);
		set_alarm(0); /* answered: what judge() says is the outcome */
		if (msg != NULL) {
			exit_code = judge(msg, url, pa->service);
			nng_msg_free(msg);
		}
	}
	set_alarm(0); /* done: closing must not be reported as a timeout */
	nng_close(sock);
	return (exit_code);
}

int
main(int argc, char **argv)
{
	probe_args  pa;
	char        urlbuf[512];
	const char *url;
	int64_t     start;
	int         rc;

	if ((rc = parse_args(argc, argv, &pa)) >= 0) {
		return (rc);
	}
	url = pa.url != NULL ? pa.url : default_url(urlbuf, sizeof(urlbuf));
	start = now_ms();
	signal(SIGPIPE, SIG_IGN);

	/* The deadline of the whole probe. Connecting (name resolution, a
	 * host that drops SYNs, a peer that never completes the SP handshake)
	 * has no timeout of its own in nng's blocking dial; the call's
	 * receive timeout ends at the same moment, and whichever comes first
	 * says so. */
	snprintf(alarm_line, sizeof(alarm_line),
	    PROG ": %s: timed out after %d ms while connecting\n", url,
	    pa.timeout_ms);
	signal(SIGALRM, on_alarm);
	set_alarm(pa.timeout_ms);
	return (probe(&pa, url, start));
}
