/*
 * The worker sandbox (sandbox.h): no_new_privs and a seccomp allow-list,
 * every other syscall trapping with SIGSYS (SCMP_ACT_TRAP rather than a
 * silent kill, so that the crash handler names the syscall).
 */
#include "sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif

static const int allowed[] = {
	/* its socket and stderr */
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(readv),
	SCMP_SYS(writev),
	SCMP_SYS(recvmsg),
	SCMP_SYS(sendmsg),
	SCMP_SYS(recvfrom),
	SCMP_SYS(sendto),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(close),
	SCMP_SYS(fstat),
	/* memory */
	SCMP_SYS(brk),
	SCMP_SYS(mmap),
	SCMP_SYS(munmap),
	SCMP_SYS(mremap),
	SCMP_SYS(madvise),
	SCMP_SYS(mprotect),
	/* locks, time, randomness */
	SCMP_SYS(futex),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(sched_yield),
	SCMP_SYS(getrandom),
	/* signals: the crash handler, abort(), raise() */
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigaction),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(restart_syscall),
	SCMP_SYS(getpid),
	SCMP_SYS(gettid),
	SCMP_SYS(tgkill),
	/* the end */
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

bool
sandbox_available(void)
{
#ifdef SANITIZER_BUILD
	return (false);
#else
	return (true);
#endif
}

int
sandbox_enter(void)
{
	scmp_filter_ctx ctx;
	int             rv = 0;

	if (!sandbox_available()) {
		return (ENOSYS);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		return (errno);
	}
	if ((ctx = seccomp_init(SCMP_ACT_TRAP)) == NULL) {
		return (ENOMEM);
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && rv == 0;
	     i++) {
		rv = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	}
	if (rv == 0) {
		rv = seccomp_load(ctx);
	}
	seccomp_release(ctx);
	return (rv < 0 ? -rv : rv);
}
