/*
 * What a worker process gives up before it runs its first call: new
 * privileges (PR_SET_NO_NEW_PRIVS), and every syscall a worker does not
 * need (a seccomp filter through Debian's libseccomp). An exploited
 * handler then cannot open a file, a socket or a process: a forbidden
 * syscall raises SIGSYS, which the crash handler reports (the call gets
 * INTERNAL naming SIGSYS and the syscall) and which ends the worker.
 *
 * The allow-list: reading and writing its socket and stderr, polling,
 * memory (brk, mmap, munmap, mremap, madvise, mprotect), futexes, clocks
 * and sleeps, signals (for the crash handler), getpid and friends, and
 * exiting. Not installed in sanitizer builds (ASan, TSan), whose runtimes
 * open /proc/self/maps, files and threads of their own when they report:
 * under the filter a report would die of SIGSYS instead.
 */
#ifndef NNGRPC_RPC_SANDBOX_H
#define NNGRPC_RPC_SANDBOX_H

#include <stdbool.h>

/* True when this build can install the filter (not a sanitizer build). */
bool sandbox_available(void);

/* Drops new privileges and installs the filter, for the calling process.
 * Returns 0, or an errno value (ENOSYS when not available). */
int sandbox_enter(void);

#endif /* NNGRPC_RPC_SANDBOX_H */
