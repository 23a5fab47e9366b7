/*
 * The frames of process isolation: between the front end and a worker
 * process (one socketpair each), and between the front end and the zygote
 * (one control socketpair). Both ends are the same binary on the same
 * host, so frames are native-endian structs followed by their bytes.
 * Nothing here calls libnng: the zygote and the workers use it.
 *
 *   front end -> worker   ISO_CALL   a=recv_ns b=method index
 *                         bytes: u32 peer length, peer, request envelope
 *   worker -> front end   ISO_REPLY  a=status
 *                         bytes: u32 message length, message,
 *                         u32 trailers, (u32 len, key, u32 len, value)*,
 *                         then the packed output to the end
 *                         ISO_CRASH  a=signal b=fault address
 *                         bytes: the crash note (iso_crash_note)
 *   front end -> worker   ISO_CANCEL no bytes: the caller gave up on the
 *                         call running (nngrpc_call_cancelled()); sent
 *                         at most once per call, only before its reply
 *                         was read, so a worker that already answered
 *                         finds it before the next ISO_CALL and skips it
 *   front end -> zygote   ISO_LOAD, ISO_SPAWN, ISO_RELOAD (as ISO_CALL)
 *   zygote -> front end   ISO_LOADED a=exit code (0: loaded), bytes: why
 *                         ISO_SPAWNED a=pid b=generation, with the
 *                         worker's socket passed as SCM_RIGHTS
 *                         ISO_SPAWN_FAILED a=errno
 *                         ISO_RELOADED as ISO_REPLY, b=generation
 *   front end -> zygote   ISO_GAUGES a=sequence number
 *   zygote -> front end   ISO_GAUGE_VALUES a=the same, bytes: doubles,
 *                         the service's gauges as the zygote reads them
 *
 * Threads: the functions are pure or act on the descriptors they are
 * given; callers serialise the use of one descriptor.
 */
#ifndef NNGRPC_RPC_ISOPROTO_H
#define NNGRPC_RPC_ISOPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "call.h"

typedef enum iso_kind {
	ISO_CALL = 1,
	ISO_REPLY,
	ISO_CRASH,
	ISO_LOAD,
	ISO_LOADED,
	ISO_SPAWN,
	ISO_SPAWNED,
	ISO_SPAWN_FAILED,
	ISO_RELOAD,
	ISO_RELOADED,
	ISO_GAUGES,
	ISO_GAUGE_VALUES,
	ISO_CANCEL,
} iso_kind;

/* Largest frame body: a request envelope of the largest size the server
 * takes, plus room for the rest. */
#define ISO_FRAME_MAX ((uint32_t) INT32_MAX)

typedef struct iso_frame {
	uint32_t f_kind; /* iso_kind */
	uint32_t f_len;  /* bytes after the header */
	int64_t  f_a;
	int64_t  f_b;
} iso_frame;

/* What a crashing worker says before it dies (its ISO_CRASH bytes). */
typedef struct iso_crash_note {
	int32_t n_code;           /* si_code */
	int32_t n_syscall;        /* for SIGSYS: the forbidden syscall */
	int32_t n_stack_overflow; /* 1: the fault hit the stack's guard */
	int32_t n_pad;
} iso_crash_note;

/* Writes all of the iovecs (n of them), retrying on EINTR and short
 * writes. Returns 0 or an errno value (EPIPE: the peer is gone). */
int iso_writev(int fd, struct iovec *iov, int n);

/* Reads exactly len bytes. Returns 0, ECONNRESET for an end of file (at
 * the first byte or later), or an errno value. */
int iso_read(int fd, void *buf, size_t len);

/* Writes a frame: header then the n iovecs' bytes (f_len is set here). */
int iso_send(
    int fd, uint32_t kind, int64_t a, int64_t b, struct iovec *iov, int n);

/* Sends a frame with one descriptor attached (SCM_RIGHTS). */
int iso_send_fd(int fd, uint32_t kind, int64_t a, int64_t b, int pass_fd);

/* Reads a frame header, and the descriptor passed with it if any
 * (*fdp, else -1; fdp may be NULL when none is expected). 0, ECONNRESET
 * or an errno value; EPROTO for a header that is not a frame. */
int iso_recv_header(int fd, iso_frame *f, int *fdp);

/* Returns new: a buffer of len bytes read from fd, freed with free(), or
 * NULL with *rvp set. */
uint8_t *iso_recv_body(int fd, uint32_t len, int *rvp);

/*
 * A call's reply, for the worker and the zygote: status, the call's
 * message and trailers, and the packed output (out, out_len; ignored
 * unless status is NNGRPC_OK). Returns 0 or an errno value.
 */
int iso_send_reply(int fd, uint32_t kind, int64_t b, int32_t status,
    const nngrpc_call *call, const uint8_t *out, size_t out_len);

/* Parses a reply's bytes (borrowed) into call: the message (kept only
 * when status is not OK), the trailers, and *payload pointing into a copy
 * in call memory. Returns false for bytes that are not a reply (the
 * call's message then says so). */
bool iso_parse_reply(nngrpc_call *call, int32_t status, const uint8_t *buf,
    size_t len, ProtobufCBinaryData *payload);

/* Parses a call's bytes (borrowed): the peer and the envelope (pointers
 * into buf). False when they do not add up. */
bool iso_parse_call(const uint8_t *buf, size_t len, const char **peerp,
    size_t *peer_lenp, const uint8_t **bodyp, size_t *body_lenp);

#endif /* NNGRPC_RPC_ISOPROTO_H */
