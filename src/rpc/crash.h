/*
 * A worker process's last words. When a handler crashes (SIGSEGV, SIGBUS,
 * SIGABRT, SIGFPE, SIGILL, SIGSYS from the seccomp filter, or a stack
 * overflow, which the handler sees on its alternate stack), the handler
 * installed here, in signal context and with async-signal-safe calls only:
 *   1. sends the front end an ISO_CRASH frame (signal, fault address,
 *      whether the fault hit the stack's guard, the forbidden syscall);
 *   2. writes one log line to stderr, "worker PID crashed: SIGNAL running
 *      METHOD (request id ID)", then the backtrace, one frame a line;
 *   3. dies of the same signal, so the zygote that reaps it sees why.
 *
 * One worker thread runs calls, so the current call's method and request
 * id are plain static buffers that crash_set_call() fills.
 */
#ifndef NNGRPC_RPC_CRASH_H
#define NNGRPC_RPC_CRASH_H

#include <stddef.h>

/* The name of a signal, "SIGSEGV", or "signal N" in buf. */
const char *crash_signal_name(int sig, char *buf, size_t len);

/* Installs the handlers on an alternate stack, in a worker process that
 * reports to fd. Loads what backtrace() needs first (it may open files,
 * which the sandbox then forbids). Returns 0 or an errno value. */
int crash_install(int fd);

/* The call that runs from now on (borrowed strings are copied, cut to
 * fit), or NULLs between calls. */
void crash_set_call(const char *method, const char *request_id);

#endif /* NNGRPC_RPC_CRASH_H */
