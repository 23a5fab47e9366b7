/*
 * Payload encodings (docs/compatibility.md, "Compression"): gzip (zlib,
 * RFC 1952) and zstd (libzstd, RFC 8878). A request's payload may come
 * compressed (metadata nngrpc-encoding), and a reply's goes compressed
 * when the request accepted it (nngrpc-accept-encoding) and it is large
 * enough; dispatch decides, this module turns bytes into bytes.
 *
 * Output goes to the call's arena. Decompression is bounded: it stops
 * once the output would pass a limit (the server's request size limit),
 * so a small compressed request cannot become an unbounded allocation.
 * Pure functions of their arguments and the arena: any thread.
 */
#ifndef NNGRPC_ENCODING_H
#define NNGRPC_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"

typedef enum nngrpc_encoding {
	NNGRPC_ENCODING_UNKNOWN = -1,
	NNGRPC_ENCODING_IDENTITY = 0,
	NNGRPC_ENCODING_GZIP,
	NNGRPC_ENCODING_ZSTD,
} nngrpc_encoding;

/* The encodings the server decodes, its preference first: the value of
 * its nngrpc-accept-encoding trailer. */
#define NNGRPC_ENCODINGS "zstd,gzip"

/* The encoding named by the len bytes at name ("gzip", "zstd",
 * "identity"; lower case, as the contract writes them), or
 * NNGRPC_ENCODING_UNKNOWN. */
nngrpc_encoding nngrpc_encoding_find(const char *name, size_t len);

/* The name of an encoding other than UNKNOWN. */
const char *nngrpc_encoding_name(nngrpc_encoding e);

/* The first encoding of an nngrpc-accept-encoding list (names separated
 * by commas, spaces around them ignored, the client's preference first)
 * that compresses; NNGRPC_ENCODING_IDENTITY when none does. */
nngrpc_encoding nngrpc_encoding_pick(const char *accept);

/* Compresses the len bytes at in with e (GZIP or ZSTD) into new arena
 * memory: *outp, *outlenp. Returns 0, NNG_ENOMEM, or NNG_EINVAL for an
 * encoding that does not compress. */
int nngrpc_encoding_compress(nngrpc_encoding e, const uint8_t *in, size_t len,
    nngrpc_arena *arena, uint8_t **outp, size_t *outlenp);

/* Decompresses the len bytes at in (one or more whole gzip members or
 * zstd frames, nothing after them) into new arena memory of at most max
 * bytes: *outp, *outlenp. Returns 0, NNG_EMSGSIZE when the output would
 * pass max, NNG_EINVAL when in is not a valid, whole stream of e, or
 * NNG_ENOMEM. */
int nngrpc_encoding_decompress(nngrpc_encoding e, const uint8_t *in,
    size_t len, size_t max, nngrpc_arena *arena, uint8_t **outp,
    size_t *outlenp);

#endif /* NNGRPC_ENCODING_H */
