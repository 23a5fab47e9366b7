/*
 * The inverted index.
 *
 * DESIGN
 * ------
 * Built once per dataset by one thread, read by any number afterwards. The
 * layout is a handful of flat arrays (no per-term allocations): a sorted
 * term dictionary (offsets into one string pool) and one posting array
 * with every term's list laid out in dictionary order, each posting a
 * document and that term's BM25F score in it. Because both the dictionary and
 * the postings are in term order, a prefix is one binary-searched range of
 * terms and one contiguous slice of postings.
 *
 * The build tokenises each document once, interning tokens (hotel__strmap)
 * and appending the document's (term, tf per field) pairs to a scratch
 * array while counting document frequencies and field lengths. Then the
 * terms are sorted, posting offsets laid out in that order, and the pairs
 * scattered to their terms' cursors, documents in increasing order, so
 * every list comes out sorted by doc with no sort. The scratch array is as
 * big as the postings, so the build peaks at twice their size; tokenising
 * twice instead would save that at about twice the build time.
 *
 * Scoring is BM25F ("simple BM25F", Robertson, Zaragoza and Taylor 2004):
 * per field f, tf_f is normalised by 1 - b + b * len_f / avglen_f and
 * weighted by w_f; the sum is saturated once with k1, and multiplied by one
 * idf per term computed from its document frequency over all fields.
 * A term's score in a document depends only on the document and the term
 * (its idf is over the whole dataset), so it is computed once, at build
 * time, and stored in the posting in place of the term frequencies: a query
 * only adds up floats, and the per-document norms are build-time scratch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "index.h"
#include "stop.h"
#include "text.h"

const double hotel__field_weight[HOTEL__NFIELDS] = {
	[HOTEL__F_NAME] = 3.0,
	[HOTEL__F_CITY] = 2.0,
	[HOTEL__F_COUNTRY] = 1.5,
	[HOTEL__F_DESC] = 1.0,
};

double
hotel__idf(size_t n, size_t df)
{
	return (
	    log(1.0 + ((double) n - (double) df + 0.5) / ((double) df + 0.5)));
}

/* A document's term with its frequency per field, between the pass over
 * the text and the scatter. */
typedef struct tmp_pair {
	uint32_t tid;
	uint8_t  tf[HOTEL__NFIELDS]; /* saturating at 255 */
} tmp_pair;

/* Scratch for one document: (term << 2 | field) per token. */
typedef struct occ_buf {
	uint64_t *v;
	size_t    n, cap;
} occ_buf;

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
	return (x < y ? -1 : x > y);
}

static void
sort_u64(uint64_t *v, size_t n)
{
	if (n > 48) {
		qsort(v, n, sizeof(*v), u64_cmp);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		uint64_t x = v[i];
		size_t   j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

/* Tokenises the document's fields into occ (sorted) and lens, interning
 * new tokens. Returns 0 or -1 (out of memory). */
static int
doc_terms(hotel__strmap *map, hotel__mem *scratch, const hotel *h,
    occ_buf *occ, uint32_t lens[HOTEL__NFIELDS])
{
	const char *fields[HOTEL__NFIELDS] = {
		[HOTEL__F_NAME] = h->name,
		[HOTEL__F_CITY] = h->city,
		[HOTEL__F_COUNTRY] = h->country,
		[HOTEL__F_DESC] = h->description,
	};
	char tok[HOTEL__TOKEN_MAX];

	occ->n = 0;
	for (int f = 0; f < HOTEL__NFIELDS; f++) {
		hotel__tokenizer t;
		size_t           len;

		lens[f] = 0;
		hotel__tok_init(&t, fields[f], strlen(fields[f]));
		while ((len = hotel__tok_next(&t, tok)) > 0) {
			uint32_t tid;
			if (hotel__strmap_get(map, tok, len, true,
			        (uint32_t) map->m_n, &tid, NULL)
			        != 0
			    || (occ->n == occ->cap
			        && hotel__grow(scratch, (void **) &occ->v,
			               &occ->cap, occ->n + 1, sizeof(uint64_t))
			            != 0)) {
				return (-1);
			}
			occ->v[occ->n++] = (uint64_t) tid << 2 | (uint64_t) f;
			if (lens[f] < UINT32_MAX) {
				lens[f]++;
			}
		}
	}
	sort_u64(occ->v, occ->n);
	return (0);
}

struct key_tid {
	const char *key;
	uint32_t    tid;
};

static int
key_tid_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct key_tid *) a)->key,
	    ((const struct key_tid *) b)->key));
}

/* The build's state: the index being filled and its scratch, all of which
 * build_free() gives back. Arrays are counted in scratch (or, for the
 * index's own, in mem). */
typedef struct ix_build {
	hotel__index  *ix;
	hotel__mem    *mem;
	const hotel   *hotels;
	size_t         n;      /* documents */
	hotel__ticker *stop;   /* a tick per document in each pass */
	size_t         nt;     /* terms, once the text pass is done */
	size_t         before; /* mem->bytes at the start */

	hotel__mem    scratch;
	hotel__strmap map; /* token -> term id, in first-seen order */
	occ_buf       occ;
	/* Document frequency by term id. */
	uint32_t *df;
	size_t    df_cap, df_n;
	/* Every document's (term, tf) pairs, in doc order; doc d's are
	 * tmp[doc_start[d] .. doc_start[d + 1]). */
	tmp_pair *tmp;
	size_t    tmp_cap, n_tmp;
	uint64_t *doc_start;
	/* Per doc and field: the field's length, then its BM25F norm. */
	float *norm;
	double total[HOTEL__NFIELDS]; /* field lengths summed */
	/* By dictionary rank: order[rank] = term id, rank[term id] = rank,
	 * the scatter cursor and the idf. */
	uint32_t *order, *rank;
	uint64_t *cursor;
	double   *idf;
} ix_build;

/* Appends document d's (term, tf per field) pairs, from its sorted
 * occurrences, to tmp and counts its terms' document frequencies. The
 * caller has grown tmp and df. */
static void
add_doc_pairs(ix_build *b, size_t d)
{
	const uint64_t *v = b->occ.v;
	size_t          n = b->occ.n, n_tmp = b->n_tmp;

	b->doc_start[d] = n_tmp;
	for (size_t i = 0; i < n;) {
		uint32_t  tid = (uint32_t) (v[i] >> 2);
		tmp_pair *p = &b->tmp[n_tmp++];
		p->tid = tid;
		memset(p->tf, 0, sizeof(p->tf));
		for (; i < n && (uint32_t) (v[i] >> 2) == tid; i++) {
			int f = (int) (v[i] & 3);
			if (p->tf[f] < UINT8_MAX) {
				p->tf[f]++;
			}
		}
		b->df[tid]++;
	}
	b->n_tmp = n_tmp;
}

/* The one pass over the text: intern tokens, and keep each document's
 * (term, tf per field) pairs, in doc order, in tmp; the field lengths go
 * to norm for now (the norms need the average lengths). */
static int
read_text(ix_build *b)
{
	uint32_t lens[HOTEL__NFIELDS];

	for (size_t d = 0; d < b->n; d++) {
		if (hotel__tick(b->stop, (uint32_t) d + 1)) {
			return (b->stop->rv);
		}
		if (doc_terms(
		        &b->map, &b->scratch, &b->hotels[d], &b->occ, lens)
		        != 0
		    || hotel__grow(&b->scratch, (void **) &b->df, &b->df_cap,
		           b->map.m_n, sizeof(uint32_t))
		        != 0
		    || hotel__grow(&b->scratch, (void **) &b->tmp, &b->tmp_cap,
		           b->n_tmp + b->occ.n, sizeof(tmp_pair))
		        != 0) {
			return (HOTEL_ENOMEM);
		}
		while (b->df_n < b->map.m_n) {
			b->df[b->df_n++] = 0;
		}
		add_doc_pairs(b, d);
		for (int f = 0; f < HOTEL__NFIELDS; f++) {
			b->total[f] += lens[f];
			b->norm[d * HOTEL__NFIELDS + f] = (float) lens[f];
		}
	}
	b->doc_start[b->n] = b->n_tmp;
	b->nt = b->map.m_n;
	return (HOTEL_OK);
}

/* Sorts the dictionary: order[rank] and rank[term id]. */
static int
sort_terms(ix_build *b)
{
	size_t          nt = b->nt;
	struct key_tid *kt = malloc((nt ? nt : 1) * sizeof(*kt));

	b->order = hotel__alloc(&b->scratch, nt * sizeof(uint32_t));
	b->rank = hotel__alloc(&b->scratch, nt * sizeof(uint32_t));
	if (b->order == NULL || b->rank == NULL || kt == NULL) {
		free(kt);
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < nt; i++) {
		kt[i].key = hotel__strmap_key(&b->map, (uint32_t) i);
		kt[i].tid = (uint32_t) i;
	}
	qsort(kt, nt, sizeof(*kt), key_tid_cmp);
	for (size_t i = 0; i < nt; i++) {
		b->order[i] = kt[i].tid;
		b->rank[kt[i].tid] = (uint32_t) i;
	}
	free(kt);
	return (HOTEL_OK);
}

/* Lays the sorted terms out in the index's pool and each term's postings
 * out in post_off, with the scatter cursors at the list starts. */
static int
lay_out_terms(ix_build *b)
{
	hotel__index *ix = b->ix;
	size_t        nt = b->nt, off = 0;
	uint64_t      p = 0;

	ix->n_terms = nt;
	ix->pool_len = 0;
	for (size_t i = 0; i < nt; i++) {
		ix->pool_len
		    += strlen(hotel__strmap_key(&b->map, b->order[i])) + 1;
	}
	if (ix->pool_len > UINT32_MAX) {
		return (HOTEL_ENOMEM);
	}
	ix->term_off = hotel__alloc(b->mem, nt * sizeof(uint32_t));
	ix->term_pool = hotel__alloc(b->mem, ix->pool_len);
	ix->post_off = hotel__alloc(b->mem, (nt + 1) * sizeof(uint64_t));
	b->cursor = hotel__alloc(&b->scratch, (nt + 1) * sizeof(uint64_t));
	if (ix->term_off == NULL || ix->term_pool == NULL
	    || ix->post_off == NULL || b->cursor == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < nt; i++) {
		const char *k = hotel__strmap_key(&b->map, b->order[i]);
		size_t      l = strlen(k) + 1;
		memcpy(ix->term_pool + off, k, l);
		ix->term_off[i] = (uint32_t) off;
		off += l;
		ix->post_off[i] = p;
		b->cursor[i] = p;
		p += b->df[b->order[i]];
	}
	ix->post_off[nt] = p;
	ix->n_post = (size_t) p;
	return (HOTEL_OK);
}

/* Norms: norm[d][f] = w_f / (1 - b + b * len_f / avglen_f), so that a
 * document's pseudo term frequency is sum_f tf_f * norm_f; and the idf of
 * each term, by rank. */
static int
weigh(ix_build *b)
{
	hotel__index *ix = b->ix;
	size_t        n = b->n;

	for (int f = 0; f < HOTEL__NFIELDS; f++) {
		ix->avglen[f] = n > 0 ? b->total[f] / (double) n : 0.0;
	}
	for (size_t d = 0; d < n; d++) {
		if (hotel__tick(b->stop, (uint32_t) d + 1)) {
			return (b->stop->rv);
		}
		for (int f = 0; f < HOTEL__NFIELDS; f++) {
			float *x = &b->norm[d * HOTEL__NFIELDS + f];
			double nb = 1.0;
			if (ix->avglen[f] > 0) {
				nb = 1.0 - HOTEL__BM25_B
				    + HOTEL__BM25_B * (double) *x
				        / ix->avglen[f];
			}
			*x = (float) (hotel__field_weight[f] / nb);
		}
	}
	b->idf
	    = hotel__alloc(&b->scratch, (b->nt ? b->nt : 1) * sizeof(double));
	if (b->idf == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < b->nt; i++) {
		b->idf[i] = hotel__idf(
		    n, (size_t) (ix->post_off[i + 1] - ix->post_off[i]));
	}
	return (HOTEL_OK);
}

/* Scatters each document's pairs to its terms' lists, scored: documents
 * in increasing order, so every list comes out sorted. */
static int
scatter(ix_build *b)
{
	hotel__index   *ix = b->ix;
	const tmp_pair *tmp = b->tmp;
	const uint64_t *doc_start = b->doc_start;
	const uint32_t *rank = b->rank;
	const double   *idf = b->idf;
	uint64_t       *cursor = b->cursor;
	hotel__posting *post;

	post = ix->post = hotel__alloc(b->mem, ix->n_post * sizeof(*post));
	if (post == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t d = 0; d < b->n; d++) {
		const float *nm = b->norm + d * HOTEL__NFIELDS;
		if (hotel__tick(b->stop, (uint32_t) d + 1)) {
			return (b->stop->rv);
		}
		for (uint64_t k = doc_start[d]; k < doc_start[d + 1]; k++) {
			uint32_t        r = rank[tmp[k].tid];
			hotel__posting *p = &post[cursor[r]++];
			double          tf = tmp[k].tf[0] * (double) nm[0]
			    + tmp[k].tf[1] * (double) nm[1]
			    + tmp[k].tf[2] * (double) nm[2]
			    + tmp[k].tf[3] * (double) nm[3];
			p->doc = (uint32_t) d;
			p->score = (float) (idf[r] * tf * (HOTEL__BM25_K1 + 1)
			    / (HOTEL__BM25_K1 + tf));
		}
	}
	return (HOTEL_OK);
}

static void
build_free(ix_build *b)
{
	hotel__mem *s = &b->scratch;
	size_t      n = b->n, nt = b->nt;

	hotel__free(s, b->tmp, b->tmp_cap * sizeof(tmp_pair));
	hotel__free(s, b->norm, n * HOTEL__NFIELDS * sizeof(float));
	hotel__free(s, b->idf, (nt ? nt : 1) * sizeof(double));
	hotel__free(s, b->doc_start, (n + 1) * sizeof(uint64_t));
	hotel__free(s, b->occ.v, b->occ.cap * sizeof(uint64_t));
	hotel__free(s, b->df, b->df_cap * sizeof(uint32_t));
	hotel__free(s, b->order, nt * sizeof(uint32_t));
	hotel__free(s, b->rank, nt * sizeof(uint32_t));
	hotel__free(s, b->cursor, (nt + 1) * sizeof(uint64_t));
	hotel__strmap_fini(&b->map);
}

int
hotel__index_build(hotel__index *ix, hotel__mem *mem, const hotel *hotels,
    size_t n, hotel__ticker *stop)
{
	ix_build b
	    = { .ix = ix, .mem = mem, .hotels = hotels, .n = n, .stop = stop };
	int rv = HOTEL_ENOMEM;

	b.before = mem->bytes;
	memset(ix, 0, sizeof(*ix));
	ix->n_docs = n;
	hotel__strmap_init(&b.map, &b.scratch);
	b.norm = hotel__alloc(&b.scratch, n * HOTEL__NFIELDS * sizeof(float));
	b.doc_start = hotel__alloc(&b.scratch, (n + 1) * sizeof(uint64_t));
	if (b.norm != NULL && b.doc_start != NULL
	    && (rv = read_text(&b)) == HOTEL_OK
	    && (rv = sort_terms(&b)) == HOTEL_OK
	    && (rv = lay_out_terms(&b)) == HOTEL_OK) {
		/* The dictionary is in the index now: the interning map's
		 * keys can go before the postings are allocated. */
		hotel__strmap_fini(&b.map);
		if ((rv = weigh(&b)) == HOTEL_OK) {
			rv = scatter(&b);
		}
	}
	build_free(&b);
	if (rv != HOTEL_OK) {
		hotel__index_fini(ix, mem);
		return (rv);
	}
	ix->bytes = mem->bytes - b.before;
	return (HOTEL_OK);
}

void
hotel__index_fini(hotel__index *ix, hotel__mem *mem)
{
	hotel__free(mem, ix->term_off, ix->n_terms * sizeof(uint32_t));
	hotel__free(mem, ix->term_pool, ix->pool_len);
	hotel__free(mem, ix->post_off, (ix->n_terms + 1) * sizeof(uint64_t));
	hotel__free(mem, ix->post, ix->n_post * sizeof(hotel__posting));
	memset(ix, 0, sizeof(*ix));
}

/* strcmp of term against the token t[0..len), which has no NUL. */
static int
term_cmp(const char *term, const char *t, size_t len)
{
	int c = strncmp(term, t, len);
	if (c != 0) {
		return (c);
	}
	return (term[len] != '\0');
}

int64_t
hotel__index_find(const hotel__index *ix, const char *t, size_t len)
{
	size_t lo = 0, hi = ix->n_terms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int    c = term_cmp(ix->term_pool + ix->term_off[mid], t, len);
		if (c == 0) {
			return ((int64_t) mid);
		}
		if (c < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return (-1);
}

void
hotel__index_prefix(const hotel__index *ix, const char *p, size_t len,
    size_t *lop, size_t *hip)
{
	size_t lo = 0, hi = ix->n_terms, a, b;

	/* First term >= p (comparing len bytes). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(ix->term_pool + ix->term_off[mid], p, len) < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	a = lo;
	hi = ix->n_terms;
	/* First term > p on its first len bytes. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(ix->term_pool + ix->term_off[mid], p, len) <= 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	b = lo;
	*lop = a;
	*hip = b;
}
