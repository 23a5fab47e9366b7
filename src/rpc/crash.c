/*
 * The crash handler of worker processes (crash.h). Everything that runs
 * in signal context is async-signal-safe: write(2), tgkill through
 * raise(), sigaction(), and backtrace()/backtrace_symbols_fd(), whose
 * first call (which loads libgcc_s and allocates) happens in
 * crash_install() instead.
 */
#include "crash.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "isoproto.h"

#define ALT_STACK_BYTES (64 * 1024)
#define NAME_MAX_BYTES  128
#define FRAMES_MAX      48
/* A fault this close below the stack's lowest address, or in its lowest
 * page, is a stack overflow. */
#define GUARD_SLACK (1024 * 1024)
/* si_code of a SIGSYS raised by a seccomp filter (glibc names it only in
 * an enum). */
#define SECCOMP_TRAP_CODE 1

static const struct {
	int         sig;
	const char *name;
} names[] = {
	{ SIGSEGV, "SIGSEGV" },
	{ SIGBUS, "SIGBUS" },
	{ SIGABRT, "SIGABRT" },
	{ SIGFPE, "SIGFPE" },
	{ SIGILL, "SIGILL" },
	{ SIGSYS, "SIGSYS" },
	{ SIGKILL, "SIGKILL" },
	{ SIGTERM, "SIGTERM" },
	{ SIGINT, "SIGINT" },
	{ SIGTRAP, "SIGTRAP" },
	{ SIGXCPU, "SIGXCPU" },
	{ SIGPIPE, "SIGPIPE" },
};

static const int handled[]
    = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGSYS };

static int       report_fd = -1;
static char      cur_method[NAME_MAX_BYTES];
static char      cur_request_id[NAME_MAX_BYTES];
static uintptr_t stack_lo; /* lowest address of this thread's stack */
static char      alt_stack[ALT_STACK_BYTES];

const char *
crash_signal_name(int sig, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (names[i].sig == sig) {
			return (names[i].name);
		}
	}
	snprintf(buf, len, "signal %d", sig);
	return (buf);
}

void
crash_set_call(const char *method, const char *request_id)
{
	snprintf(cur_method, sizeof(cur_method), "%s",
	    method != NULL ? method : "");
	snprintf(cur_request_id, sizeof(cur_request_id), "%s",
	    request_id != NULL ? request_id : "");
}

/* Appends s to buf (cap bytes) at *n, async-signal-safe. */
static void
put(char *buf, size_t cap, size_t *n, const char *s)
{
	while (*s != '\0' && *n + 1 < cap) {
		buf[(*n)++] = *s++;
	}
}

static void
put_uint(char *buf, size_t cap, size_t *n, unsigned long v)
{
	char   digits[24];
	size_t i = sizeof(digits) - 1;

	digits[i] = '\0';
	do {
		digits[--i] = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0 && i > 0);
	put(buf, cap, n, digits + i);
}

/* The log line and the backtrace, on stderr. */
static void
log_crash(int sig, bool overflow)
{
	void  *frames[FRAMES_MAX];
	char   line[512];
	size_t n = 0;
	char   unused[16];
	int    depth;

	put(line, sizeof(line), &n, "nngrpc worker ");
	put_uint(line, sizeof(line), &n, (unsigned long) getpid());
	put(line, sizeof(line), &n, " crashed: ");
	/* The table lookup never formats for the signals handled here. */
	put(line, sizeof(line), &n,
	    crash_signal_name(sig, unused, sizeof(unused)));
	if (overflow) {
		put(line, sizeof(line), &n, " (stack overflow)");
	}
	put(line, sizeof(line), &n, " running ");
	put(line, sizeof(line), &n, cur_method[0] ? cur_method : "?");
	put(line, sizeof(line), &n, " (request id ");
	put(line, sizeof(line), &n, cur_request_id[0] ? cur_request_id : "-");
	put(line, sizeof(line), &n, "); backtrace:\n");
	(void) !write(STDERR_FILENO, line, n);
	depth = backtrace(frames, FRAMES_MAX);
	backtrace_symbols_fd(frames, depth, STDERR_FILENO);
}

static void
on_crash(int sig, siginfo_t *si, void *uc)
{
	int            saved = errno;
	uintptr_t      addr = (uintptr_t) si->si_addr;
	iso_crash_note note = { 0 };
	iso_frame      f = { ISO_CRASH, sizeof(note), sig, (int64_t) addr };

	(void) uc;
	note.n_code = si->si_code;
	note.n_stack_overflow = sig == SIGSEGV && stack_lo != 0
	    && addr + GUARD_SLACK >= stack_lo && addr < stack_lo + 4096;
	if (sig == SIGSYS && si->si_code == SECCOMP_TRAP_CODE) {
		note.n_syscall = si->si_syscall;
	}
	if (report_fd >= 0) {
		/* One write each; a front end that went away is no matter. */
		(void) !write(report_fd, &f, sizeof(f));
		(void) !write(report_fd, &note, sizeof(note));
	}
	log_crash(sig, note.n_stack_overflow != 0);
	/* SA_RESETHAND put the default action back: die of it once this
	 * handler returns (the signal is blocked until then). */
	raise(sig);
	errno = saved;
}

/* The lowest address of the calling thread's stack, for telling an
 * overflow from another fault. */
static uintptr_t
find_stack_lo(void)
{
	pthread_attr_t a;
	void          *addr = NULL;
	size_t         size = 0;

	if (pthread_getattr_np(pthread_self(), &a) != 0) {
		return (0);
	}
	pthread_attr_getstack(&a, &addr, &size);
	pthread_attr_destroy(&a);
	return ((uintptr_t) addr);
}

int
crash_install(int fd)
{
	stack_t ss = { .ss_sp = alt_stack, .ss_size = sizeof(alt_stack) };
	struct sigaction sa;
	void            *warm[2];

	report_fd = fd;
	stack_lo = find_stack_lo();
	(void) backtrace(warm, 2); /* loads libgcc_s now, not in a crash */
	if (sigaltstack(&ss, NULL) != 0) {
		return (errno);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_crash;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
		if (sigaction(handled[i], &sa, NULL) != 0) {
			return (errno);
		}
	}
	return (0);
}
