/*
 * Diagnostics handlers. Echo returns its input bytes without copying them
 * (the output borrows the input, which lives until the call ends), sends
 * back the request metadata it is asked to as trailers, and,
 * asked by the request metadata key TESTING_HOSTNAME_KEY, names the server
 * host in the trailer of that key: behind DNS round-robin (a Swarm
 * service, a headless Kubernetes Service) that tells which replica
 * answered. Sleep sleeps in slices of SLEEP_SLICE_NS so it notices the
 * deadline and a cancel (nngrpc_call_cancelled()); Fail
 * answers the status it is asked for. Crash injects the fault it is
 * asked for, bounded where a fault could take the machine (HANG: 60 s,
 * OOM: 2 GiB), since in thread mode it runs in the server itself.
 */
#include "testing_service.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "nngrpc/testing/v1/testing.nngrpc.h"

/* The host name, read once by testing_service_register() before the
 * server runs; read-only (so shared by the workers) afterwards. */
static char hostname[256];
/* Set once before the server runs: Crash may inject its faults. */
static bool crash_allowed;

#define HANG_MAX_NS (60LL * 1000000000LL)
/* How long Sleep sleeps between two looks for a cancel. */
#define SLEEP_SLICE_NS (2LL * 1000000LL)
#define OOM_MAX_BYTES  (2ULL << 30)
#define OOM_CHUNK      (16u << 20)

/* Sends the request metadata value of key back as a trailer, through the
 * binary accessors for a "-bin" key (whose value is not sent back when it
 * is not base64). Returns 0, or NNG_ENOMEM. */
static int
return_metadata(nngrpc_call *call, const char *key)
{
	size_t      n = strlen(key), len;
	const char *text;

	if (n >= 4 && strcmp(key + n - 4, "-bin") == 0) {
		const uint8_t *bytes
		    = nngrpc_call_metadata_bin(call, key, &len);
		return (bytes == NULL
		        ? 0
		        : nngrpc_call_set_trailer_bin(call, key, bytes, len));
	}
	if ((text = nngrpc_call_metadata(call, key)) == NULL) {
		return (0);
	}
	return (nngrpc_call_set_trailer(call, key, text));
}

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
	for (size_t i = 0; i < req->n_return_metadata; i++) {
		if (return_metadata(call, req->return_metadata[i]) != 0) {
			return (
			    nngrpc_call_error(call, NNGRPC_RESOURCE_EXHAUSTED,
			        "out of memory for a returned trailer"));
		}
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
		if (nngrpc_call_cancelled(call)) {
			return (nngrpc_call_error(call, NNGRPC_CANCELLED,
			    "cancelled after sleeping %lld of %u ms",
			    (long long) ((now - start) / 1000000), req->ms));
		}
		if (end - now > SLEEP_SLICE_NS) {
			end = now + SLEEP_SLICE_NS;
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

/* Recursion the compiler cannot turn into a loop: each frame keeps 4 KiB
 * alive across the call. */
__attribute__((noinline)) static int
overflow(volatile int depth)
{
	volatile char frame[4096];

	frame[0] = (char) depth;
	frame[sizeof(frame) - 1] = (char) depth;
	if (depth == INT32_MAX) { /* never: 8 TiB of stack */
		return (0);
	}
	return (overflow(depth + 1) + frame[0] + frame[sizeof(frame) - 1]);
}

/* Touches OOM_CHUNK bytes at a time until malloc fails or the bound. */
static nngrpc_status
eat_memory(nngrpc_call *call)
{
	void **chunks = calloc(OOM_MAX_BYTES / OOM_CHUNK, sizeof(void *));
	size_t n = 0;

	if (chunks == NULL) {
		return (nngrpc_call_error(
		    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory at once"));
	}
	while (n < OOM_MAX_BYTES / OOM_CHUNK
	    && (chunks[n] = malloc(OOM_CHUNK)) != NULL) {
		memset(chunks[n], (int) n | 1, OOM_CHUNK);
		n++;
	}
	for (size_t i = 0; i < n; i++) {
		free(chunks[i]);
	}
	free(chunks);
	return (nngrpc_call_error(call, NNGRPC_RESOURCE_EXHAUSTED,
	    "allocated %zu MiB, then %s", n * (OOM_CHUNK >> 20),
	    n == OOM_MAX_BYTES / OOM_CHUNK ? "stopped at the test's bound"
	                                   : "malloc failed"));
}

static nngrpc_status
crash(nngrpc_call *call, const Nngrpc__Testing__V1__CrashRequest *req,
    Nngrpc__Testing__V1__CrashResponse *resp)
{
	int64_t            until = nngrpc_now_ns() + HANG_MAX_NS;
	volatile uintptr_t low = 16; /* unmapped, and not NULL for UBSan */
	int                fd;

	(void) resp;
	if (!crash_allowed) {
		return (nngrpc_call_error(call, NNGRPC_FAILED_PRECONDITION,
		    "fault injection is off in this server"));
	}
	switch (req->kind) {
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_SEGFAULT:
		*(volatile int *) low = 1;
		raise(SIGSEGV); /* in case page 0 is mapped */
		break;
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_ABORT:
		abort();
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_HANG:
		while (nngrpc_now_ns() < until) { }
		return (nngrpc_call_error(call, NNGRPC_DEADLINE_EXCEEDED,
		    "hung for the test's bound (60 s)"));
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_OOM:
		return (eat_memory(call));
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_STACK_OVERFLOW:
		return (overflow(0) == 0 ? NNGRPC_OK : NNGRPC_INTERNAL);
	case NNGRPC__TESTING__V1__CRASH_KIND__CRASH_FORBIDDEN_SYSCALL:
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0) {
			close(fd);
		}
		return (NNGRPC_OK);
	default:
		break;
	}
	return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
	    "kind: %d is not a fault to inject", (int) req->kind));
}

void
testing_service_allow_crash(bool allow)
{
	crash_allowed = allow;
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
		.crash = crash,
	};
	return (nngrpc__testing__v1__testing__register(server, &impl, NULL));
}
