/*
 * gzip through zlib's deflate/inflate with windowBits 31 (the gzip
 * wrapper), zstd through libzstd's one-shot compressor and streaming
 * decompressor. Compression levels are the fast end: a server compresses
 * on the call's worker thread, and `make bench` measures the bytes and
 * time they give on a search page.
 *
 * Decompression writes into an arena buffer that starts at what the
 * stream says it holds (gzip's ISIZE, zstd's frame content size; both
 * only hints, the stream may lie) and doubles up to max + 1 bytes: output
 * that fills max + 1 is over the limit.
 *
 * The codec contexts (zlib streams, zstd contexts) are reused: a call
 * takes a set from a small pool and gives it back. Making them per call
 * costs more than compressing a search page: deflateInit2() allocates
 * some 270 KB, which malloc() maps and unmaps each time, every page
 * faulted in again. The pool holds at most POOL_MAX idle sets, reachable
 * from it until the process exits.
 */
#include "encoding.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <zlib.h>
#include <zstd.h>

#define GZIP_LEVEL  1 /* Z_BEST_SPEED */
#define ZSTD_LEVEL  1
#define GZIP_WINDOW 31 /* 15 bits, the gzip wrapper */
#define OUT_MIN     4096
#define ZLIB_MAX_IO ((size_t) UINT_MAX) /* avail_in/out are uInt */
#define POOL_MAX    64

/* One set of codec contexts, each made on first use. */
typedef struct codec {
	struct codec *next; /* in the pool */
	z_stream      deflate;
	bool          deflate_ready;
	z_stream      inflate;
	bool          inflate_ready;
	ZSTD_CCtx    *zc;
	ZSTD_DCtx    *zd;
} codec;

static pthread_mutex_t pool_mtx = PTHREAD_MUTEX_INITIALIZER;
static codec          *pool;
static int             pool_len;

static void
codec_free(codec *c)
{
	if (c->deflate_ready) {
		deflateEnd(&c->deflate);
	}
	if (c->inflate_ready) {
		inflateEnd(&c->inflate);
	}
	ZSTD_freeCCtx(c->zc);
	ZSTD_freeDCtx(c->zd);
	free(c);
}

/* Returns a codec set from the pool, or a new empty one; NULL when out
 * of memory. Give it back with codec_put(). */
static codec *
codec_get(void)
{
	codec *c;

	pthread_mutex_lock(&pool_mtx);
	if ((c = pool) != NULL) {
		pool = c->next;
		pool_len--;
	}
	pthread_mutex_unlock(&pool_mtx);
	return (c != NULL ? c : calloc(1, sizeof(*c)));
}

static void
codec_put(codec *c)
{
	pthread_mutex_lock(&pool_mtx);
	if (pool_len < POOL_MAX) {
		c->next = pool;
		pool = c;
		pool_len++;
		c = NULL;
	}
	pthread_mutex_unlock(&pool_mtx);
	if (c != NULL) {
		codec_free(c);
	}
}

nngrpc_encoding
nngrpc_encoding_find(const char *name, size_t len)
{
	static const struct {
		const char     *name;
		nngrpc_encoding e;
	} names[] = {
		{ "identity", NNGRPC_ENCODING_IDENTITY },
		{ "gzip", NNGRPC_ENCODING_GZIP },
		{ "zstd", NNGRPC_ENCODING_ZSTD },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i].name) == len
		    && memcmp(names[i].name, name, len) == 0) {
			return (names[i].e);
		}
	}
	return (NNGRPC_ENCODING_UNKNOWN);
}

const char *
nngrpc_encoding_name(nngrpc_encoding e)
{
	switch (e) {
	case NNGRPC_ENCODING_GZIP:
		return ("gzip");
	case NNGRPC_ENCODING_ZSTD:
		return ("zstd");
	default:
		return ("identity");
	}
}

nngrpc_encoding
nngrpc_encoding_pick(const char *accept)
{
	const char *p = accept;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t      n = end != NULL ? (size_t) (end - p) : strlen(p);
		size_t      a = 0;

		while (a < n && p[a] == ' ') {
			a++;
		}
		while (n > a && p[n - 1] == ' ') {
			n--;
		}
		nngrpc_encoding e = nngrpc_encoding_find(p + a, n - a);
		if (e == NNGRPC_ENCODING_GZIP || e == NNGRPC_ENCODING_ZSTD) {
			return (e);
		}
		if (end == NULL) {
			break;
		}
		p = end + 1;
	}
	return (NNGRPC_ENCODING_IDENTITY);
}

/* ---- compression ------------------------------------------------------ */

/* c's deflate stream, ready for a new gzip member; false when out of
 * memory. */
static bool
deflate_ready(codec *c)
{
	if (c->deflate_ready) {
		return (deflateReset(&c->deflate) == Z_OK);
	}
	c->deflate_ready = deflateInit2(&c->deflate, GZIP_LEVEL, Z_DEFLATED,
	                       GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY)
	    == Z_OK;
	return (c->deflate_ready);
}

static int
gzip_compress(codec *c, const uint8_t *in, size_t len, nngrpc_arena *arena,
    uint8_t **outp, size_t *outlenp)
{
	z_stream *z = &c->deflate;
	size_t    bound;
	uint8_t  *out;

	if (len > ZLIB_MAX_IO / 2) {
		return (NNG_ENOMEM); /* over any request limit anyway */
	}
	if (!deflate_ready(c)) {
		return (NNG_ENOMEM);
	}
	bound = deflateBound(z, (uLong) len);
	if ((out = nngrpc_arena_alloc(arena, bound)) == NULL) {
		return (NNG_ENOMEM);
	}
	z->next_in = (Bytef *) in;
	z->avail_in = (uInt) len;
	z->next_out = out;
	z->avail_out = (uInt) bound;
	if (deflate(z, Z_FINISH) != Z_STREAM_END) {
		return (NNG_ENOMEM); /* deflateBound() was enough: never */
	}
	*outlenp = z->total_out;
	*outp = out;
	return (0);
}

static int
zstd_compress(codec *c, const uint8_t *in, size_t len, nngrpc_arena *arena,
    uint8_t **outp, size_t *outlenp)
{
	size_t   bound = ZSTD_compressBound(len);
	uint8_t *out;
	size_t   n;

	if ((c->zc == NULL && (c->zc = ZSTD_createCCtx()) == NULL)
	    || ZSTD_isError(bound)
	    || (out = nngrpc_arena_alloc(arena, bound)) == NULL) {
		return (NNG_ENOMEM);
	}
	n = ZSTD_compressCCtx(c->zc, out, bound, in, len, ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		return (NNG_ENOMEM); /* its only failure with room enough */
	}
	*outp = out;
	*outlenp = n;
	return (0);
}

int
nngrpc_encoding_compress(nngrpc_encoding e, const uint8_t *in, size_t len,
    nngrpc_arena *arena, uint8_t **outp, size_t *outlenp)
{
	codec *c;
	int    rv;

	if (e != NNGRPC_ENCODING_GZIP && e != NNGRPC_ENCODING_ZSTD) {
		return (NNG_EINVAL);
	}
	if ((c = codec_get()) == NULL) {
		return (NNG_ENOMEM);
	}
	rv = e == NNGRPC_ENCODING_GZIP
	    ? gzip_compress(c, in, len, arena, outp, outlenp)
	    : zstd_compress(c, in, len, arena, outp, outlenp);
	codec_put(c);
	return (rv);
}

/* ---- decompression ---------------------------------------------------- */

/* An output buffer in the arena that grows up to max + 1 bytes. */
typedef struct {
	nngrpc_arena *arena;
	uint8_t      *buf;
	size_t        len; /* written */
	size_t        cap;
	size_t        max;
} outbuf;

/* Makes room after the len bytes written: the first buffer holds hint
 * bytes (what the stream says it holds) and one more, then each doubles.
 * Returns 0, NNG_EMSGSIZE when the buffer already holds max + 1 (the
 * output is over the limit), or NNG_ENOMEM. */
static int
grow(outbuf *o, size_t hint)
{
	size_t   cap = o->cap == 0 ? hint + 1 : o->cap * 2;
	uint8_t *buf;

	if (o->cap > o->max) {
		return (NNG_EMSGSIZE);
	}
	if (cap < OUT_MIN) {
		cap = OUT_MIN;
	}
	if (cap > o->max + 1 || cap <= o->cap) {
		cap = o->max + 1;
	}
	if ((buf = nngrpc_arena_alloc(o->arena, cap)) == NULL) {
		return (NNG_ENOMEM);
	}
	if (o->len > 0) {
		memcpy(buf, o->buf, o->len);
	}
	o->buf = buf;
	o->cap = cap;
	return (0);
}

/* The uncompressed size a gzip stream says it has (ISIZE, its last four
 * bytes: the last member's size modulo 2^32), as a first guess. */
static size_t
gzip_hint(const uint8_t *in, size_t len)
{
	if (len < 18) {
		return (0);
	}
	return ((size_t) in[len - 4] | (size_t) in[len - 3] << 8
	    | (size_t) in[len - 2] << 16 | (size_t) in[len - 1] << 24);
}

/* Runs inflate over in into o until the input ends; a stream of several
 * members goes on after each member's end. */
static int
inflate_all(z_stream *z, const uint8_t *in, size_t len, outbuf *o)
{
	int rv, zr;

	z->next_in = (Bytef *) in;
	z->avail_in = (uInt) len;
	for (;;) {
		if (o->len == o->cap
		    && (rv = grow(o, gzip_hint(in, len))) != 0) {
			return (rv);
		}
		z->next_out = o->buf + o->len;
		z->avail_out = (uInt) (o->cap - o->len);
		zr = inflate(z, Z_NO_FLUSH);
		o->len = o->cap - z->avail_out;
		if (zr == Z_STREAM_END && z->avail_in == 0) {
			return (0);
		}
		if (zr == Z_STREAM_END) { /* another member follows */
			if (inflateReset(z) != Z_OK) {
				return (NNG_EINVAL);
			}
			continue;
		}
		if (zr == Z_MEM_ERROR) {
			return (NNG_ENOMEM);
		}
		/* Z_OK or Z_BUF_ERROR with room left: the input ended early.
		 */
		if ((zr != Z_OK && zr != Z_BUF_ERROR) || z->avail_out > 0) {
			return (NNG_EINVAL);
		}
	}
}

static int
gzip_decompress(codec *c, const uint8_t *in, size_t len, outbuf *o)
{
	if (o->max >= ZLIB_MAX_IO) {
		o->max = ZLIB_MAX_IO - 1; /* what one inflate() can write */
	}
	if (len > ZLIB_MAX_IO) {
		return (NNG_EMSGSIZE);
	}
	if (c->inflate_ready) {
		if (inflateReset(&c->inflate) != Z_OK) {
			return (NNG_ENOMEM);
		}
	} else if (!(c->inflate_ready
	               = inflateInit2(&c->inflate, GZIP_WINDOW) == Z_OK)) {
		return (NNG_ENOMEM);
	}
	return (inflate_all(&c->inflate, in, len, o));
}

static int
zstd_decompress(codec *c, const uint8_t *in, size_t len, outbuf *o)
{
	unsigned long long size = ZSTD_getFrameContentSize(in, len);
	ZSTD_inBuffer      src = { in, len, 0 };
	ZSTD_DCtx         *dctx;
	size_t             zr = 1;
	int                rv = 0;

	if (size == ZSTD_CONTENTSIZE_ERROR) {
		return (NNG_EINVAL);
	}
	if (size != ZSTD_CONTENTSIZE_UNKNOWN && size > o->max) {
		return (NNG_EMSGSIZE);
	}
	if (c->zd == NULL && (c->zd = ZSTD_createDCtx()) == NULL) {
		return (NNG_ENOMEM);
	}
	dctx = c->zd;
	(void) ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
	while (rv == 0 && (src.pos < src.size || zr != 0)) {
		ZSTD_outBuffer dst;
		if (o->len == o->cap
		    && (rv = grow(
		            o, size == ZSTD_CONTENTSIZE_UNKNOWN ? 0 : size))
		        != 0) {
			break;
		}
		dst = (ZSTD_outBuffer) { o->buf, o->cap, o->len };
		zr = ZSTD_decompressStream(dctx, &dst, &src);
		o->len = dst.pos;
		if (ZSTD_isError(zr)) {
			rv = NNG_EINVAL;
		} else if (zr != 0 && src.pos == src.size
		    && dst.pos < dst.size) {
			rv = NNG_EINVAL; /* the input ended inside a frame */
		}
	}
	return (rv);
}

int
nngrpc_encoding_decompress(nngrpc_encoding e, const uint8_t *in, size_t len,
    size_t max, nngrpc_arena *arena, uint8_t **outp, size_t *outlenp)
{
	outbuf o = { .arena = arena, .max = max };
	codec *c;
	int    rv;

	if (e != NNGRPC_ENCODING_GZIP && e != NNGRPC_ENCODING_ZSTD) {
		return (NNG_EINVAL);
	}
	if ((c = codec_get()) == NULL) {
		return (NNG_ENOMEM);
	}
	rv = e == NNGRPC_ENCODING_GZIP ? gzip_decompress(c, in, len, &o)
	                               : zstd_decompress(c, in, len, &o);
	codec_put(c);
	if (rv == 0 && o.len > max) {
		rv = NNG_EMSGSIZE;
	}
	if (rv == 0) {
		*outp = o.buf;
		*outlenp = o.len;
	}
	return (rv);
}
