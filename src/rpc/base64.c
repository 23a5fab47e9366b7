/*
 * Base64 by table: three bytes become four characters of six bits each.
 * The decoder reads four characters at a time and then the one, two or
 * three left over (an unpadded tail); padding is stripped first, once
 * checked.
 */
#include "base64.h"

static const char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
nngrpc_base64_encoded_len(size_t n)
{
	return (n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1));
}

size_t
nngrpc_base64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8
		    | in[i + 2];
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		out[o++] = alphabet[in[i] >> 2];
		out[o++] = alphabet[(in[i] & 3) << 4];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t) in[i] << 8 | in[i + 1];
		out[o++] = alphabet[v >> 10];
		out[o++] = alphabet[(v >> 4) & 63];
		out[o++] = alphabet[(v & 15) << 2];
	}
	out[o] = '\0';
	return (o);
}

size_t
nngrpc_base64_decoded_max(size_t len)
{
	return (len / 4 * 3 + 2);
}

/* The six bits of a base64 character, or -1. */
static int
sextet(char c)
{
	if (c >= 'A' && c <= 'Z') {
		return (c - 'A');
	}
	if (c >= 'a' && c <= 'z') {
		return (c - 'a' + 26);
	}
	if (c >= '0' && c <= '9') {
		return (c - '0' + 52);
	}
	return (c == '+' ? 62 : c == '/' ? 63 : -1);
}

/* Strips valid padding: returns the length without it, or (size_t) -1
 * when the '=' are misplaced. */
static size_t
unpad(const char *text, size_t len)
{
	size_t n = len;

	while (n > 0 && text[n - 1] == '=' && len - n < 2) {
		n--;
	}
	if (n > 0 && text[n - 1] == '=') {
		return ((size_t) -1); /* three or more */
	}
	if (n < len && len % 4 != 0) {
		return ((size_t) -1); /* padding must fill a quantum */
	}
	return (n);
}

bool
nngrpc_base64_decode(
    const char *text, size_t len, uint8_t *out, size_t *outlenp)
{
	size_t   n = unpad(text, len), o = 0;
	uint32_t acc = 0;
	int      bits = 0;

	if (n == (size_t) -1 || n % 4 == 1) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		int v = sextet(text[i]);
		if (v < 0) {
			return (false);
		}
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*outlenp = o;
	return (true);
}
