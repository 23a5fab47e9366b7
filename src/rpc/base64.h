/*
 * Base64 (RFC 4648 section 4: the standard alphabet) for the values of
 * "-bin" metadata and trailers, which carry bytes as text in the
 * envelope's string maps (docs/compatibility.md). Encoding writes no
 * padding, as gRPC does; decoding takes it or not.
 *
 * Pure functions of their arguments: any thread.
 */
#ifndef NNGRPC_BASE64_H
#define NNGRPC_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length of the unpadded encoding of n bytes (no NUL counted). */
size_t nngrpc_base64_encoded_len(size_t n);

/* Writes the unpadded encoding of the n bytes at in into out, which has
 * room for nngrpc_base64_encoded_len(n) + 1 bytes, NUL-terminated.
 * Returns its length. */
size_t nngrpc_base64_encode(const uint8_t *in, size_t n, char *out);

/* The most bytes that len characters of base64 decode to. */
size_t nngrpc_base64_decoded_max(size_t len);

/* Decodes the len characters at text (padded or not) into out, which has
 * room for nngrpc_base64_decoded_max(len) bytes; *outlenp gets the
 * length. Returns false, with out partly written, when text is not
 * base64: a character outside the alphabet, padding other than one or
 * two '=' at the end of a multiple of 4 characters, or a length that
 * leaves one lone character. */
bool nngrpc_base64_decode(
    const char *text, size_t len, uint8_t *out, size_t *outlenp);

#endif /* NNGRPC_BASE64_H */
