/*
 * Diagnostics handlers. Echo returns its input bytes without copying them
 * (the output borrows the input, which lives until the call ends), and,
 * asked by the request metadata key TESTING_HOSTNAME_KEY, names the server
 * host in the trailer of that key: behind DNS round-robin (a Swarm
 * service, a headless Kubernetes Service) that tells which replica
 * answered. Sleep sleeps in slices so it notices the deadline; Fail
 * answers the status it is asked for.
 */
#include "testing_service.h"

#include <time.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "nngrpc/testing/v1/testing.nngrpc.h"

/* The host name, read once by testing_service_register() before the
 * server runs; read-only (so shared by the workers) afterwards. */
static char hostname[256];

static nngrpc_status
echo(nngrpc_call *call, const Nngrpc__Testing__V1__EchoRequest *req,
    Nngrpc__Testing__V1__EchoResponse *resp)
{
	resp->payload = req->payload;
	if (nngrpc_call_metadata(call, TESTING_HOSTNAME_KEY) != NULL
	    && nngrpc_call_set_trailer(call, TESTING_HOSTNAME_KEY, hostname)
	        != 0) {
		return (nngrpc_call_error(call, NNGRPC_RESOURCE_EXHAUSTED,
		    "out of memory for the %s trailer", TESTING_HOSTNAME_KEY));
	}
	return (NNGRPC_OK);
}

static nngrpc_status
sleep_for(nngrpc_call *call, const Nngrpc__Testing__V1__SleepRequest *req,
    Nngrpc__Testing__V1__SleepResponse *resp)
{
	int64_t start = nngrpc_now_ns();
	int64_t until = start + (int64_t) req->ms * 1000000;
	int64_t deadline = nngrpc_call_deadline(call);
	int64_t now;

	while ((now = nngrpc_now_ns()) < until) {
		int64_t end = until < deadline ? until : deadline;
		if (now >= deadline) {
			return (nngrpc_call_error(call,
			    NNGRPC_DEADLINE_EXCEEDED,
			    "deadline exceeded after sleeping %lld of %u ms",
			    (long long) ((now - start) / 1000000), req->ms));
		}
		struct timespec ts = {
			.tv_sec = (end - now) / 1000000000,
			.tv_nsec = (end - now) % 1000000000,
		};
		nanosleep(&ts, NULL);
	}
	resp->slept_us = (uint64_t) (nngrpc_now_ns() - start) / 1000;
	return (NNGRPC_OK);
}

static nngrpc_status
fail(nngrpc_call *call, const Nngrpc__Testing__V1__FailRequest *req,
    Nngrpc__Testing__V1__FailResponse *resp)
{
	(void) resp;
	if (!nngrpc_status_valid(req->code)) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "code: %d is not a status code (0..16)", req->code));
	}
	if (req->code == NNGRPC_OK) {
		return (NNGRPC_OK);
	}
	if (req->message_bytes.len > 0) {
		return (nngrpc_call_error_len(call, (nngrpc_status) req->code,
		    (const char *) req->message_bytes.data,
		    req->message_bytes.len));
	}
	return (nngrpc_call_error(
	    call, (nngrpc_status) req->code, "%s", req->message));
}

int
testing_service_register(nngrpc_server *server)
{
	if (gethostname(hostname, sizeof(hostname) - 1) != 0) {
		hostname[0] = '\0';
	}
	static const Nngrpc__Testing__V1__Testing_Impl impl = {
		.echo = echo,
		.sleep = sleep_for,
		.fail = fail,
	};
	return (nngrpc__testing__v1__testing__register(server, &impl, NULL));
}
