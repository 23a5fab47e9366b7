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

int
hotel__index_build(
    hotel__index *ix, hotel__mem *mem, const hotel *hotels, size_t n)
{
	hotel__mem      scratch = { 0 };
	hotel__strmap   map;
	occ_buf         occ = { 0 };
	uint32_t       *df = NULL, *order = NULL, *rank = NULL;
	uint64_t       *cursor = NULL;
	tmp_pair       *tmp = NULL;
	float          *norm = NULL; /* per doc and field, see below */
	size_t          tmp_cap = 0, n_tmp = 0;
	uint64_t       *doc_start = NULL;
	struct key_tid *kt = NULL;
	double         *idf = NULL;
	size_t          df_cap = 0, df_n = 0, nt = 0, i;
	double          total[HOTEL__NFIELDS] = { 0 };
	uint32_t        lens[HOTEL__NFIELDS];
	size_t          before = mem->bytes;
	int             rv = HOTEL_ENOMEM;

	memset(ix, 0, sizeof(*ix));
	ix->n_docs = n;
	hotel__strmap_init(&map, &scratch);
	norm = hotel__alloc(&scratch, n * HOTEL__NFIELDS * sizeof(float));
	doc_start = hotel__alloc(&scratch, (n + 1) * sizeof(uint64_t));
	if (norm == NULL || doc_start == NULL) {
		goto out;
	}

	/* The one pass over the text: intern tokens, and keep each
	 * document's (term, tf per field) pairs, in doc order, in tmp. */
	for (size_t d = 0; d < n; d++) {
		if (doc_terms(&map, &scratch, &hotels[d], &occ, lens) != 0
		    || hotel__grow(&scratch, (void **) &df, &df_cap, map.m_n,
		           sizeof(uint32_t))
		        != 0
		    || hotel__grow(&scratch, (void **) &tmp, &tmp_cap,
		           n_tmp + occ.n, sizeof(tmp_pair))
		        != 0) {
			goto out;
		}
		while (df_n < map.m_n) {
			df[df_n++] = 0;
		}
		doc_start[d] = n_tmp;
		for (i = 0; i < occ.n;) {
			uint32_t  tid = (uint32_t) (occ.v[i] >> 2);
			tmp_pair *p = &tmp[n_tmp++];
			p->tid = tid;
			memset(p->tf, 0, sizeof(p->tf));
			for (; i < occ.n && (uint32_t) (occ.v[i] >> 2) == tid;
			     i++) {
				int f = (int) (occ.v[i] & 3);
				if (p->tf[f] < UINT8_MAX) {
					p->tf[f]++;
				}
			}
			df[tid]++;
		}
		for (int f = 0; f < HOTEL__NFIELDS; f++) {
			total[f] += lens[f];
			/* The length for now; the norm once avglen is known.
			 */
			norm[d * HOTEL__NFIELDS + f] = (float) lens[f];
		}
	}
	doc_start[n] = n_tmp;
	nt = map.m_n;

	/* The dictionary, sorted. */
	order = hotel__alloc(&scratch, nt * sizeof(uint32_t));
	rank = hotel__alloc(&scratch, nt * sizeof(uint32_t));
	kt = malloc((nt ? nt : 1) * sizeof(*kt));
	if (order == NULL || rank == NULL || kt == NULL) {
		goto out;
	}
	for (i = 0; i < nt; i++) {
		kt[i].key = hotel__strmap_key(&map, (uint32_t) i);
		kt[i].tid = (uint32_t) i;
	}
	qsort(kt, nt, sizeof(*kt), key_tid_cmp);
	for (i = 0; i < nt; i++) {
		order[i] = kt[i].tid;
	}
	free(kt);
	kt = NULL;
	ix->n_terms = nt;
	ix->pool_len = 0;
	for (i = 0; i < nt; i++) {
		rank[order[i]] = (uint32_t) i;
		ix->pool_len += strlen(hotel__strmap_key(&map, order[i])) + 1;
	}
	if (ix->pool_len > UINT32_MAX) {
		goto out;
	}
	ix->term_off = hotel__alloc(mem, nt * sizeof(uint32_t));
	ix->term_pool = hotel__alloc(mem, ix->pool_len);
	ix->post_off = hotel__alloc(mem, (nt + 1) * sizeof(uint64_t));
	cursor = hotel__alloc(&scratch, (nt + 1) * sizeof(uint64_t));
	if (ix->term_off == NULL || ix->term_pool == NULL
	    || ix->post_off == NULL || cursor == NULL) {
		goto out;
	}
	{
		size_t   off = 0;
		uint64_t p = 0;
		for (i = 0; i < nt; i++) {
			const char *k = hotel__strmap_key(&map, order[i]);
			size_t      l = strlen(k) + 1;
			memcpy(ix->term_pool + off, k, l);
			ix->term_off[i] = (uint32_t) off;
			off += l;
			ix->post_off[i] = p;
			cursor[i] = p;
			p += df[order[i]];
		}
		ix->post_off[nt] = p;
		ix->n_post = (size_t) p;
	}
	hotel__strmap_fini(&map);

	/* Norms: norm[d][f] = w_f / (1 - b + b * len_f / avglen_f), so a
	 * document's pseudo term frequency is sum_f tf_f * norm_f. */
	for (int f = 0; f < HOTEL__NFIELDS; f++) {
		ix->avglen[f] = n > 0 ? total[f] / (double) n : 0.0;
	}
	for (size_t d = 0; d < n; d++) {
		for (int f = 0; f < HOTEL__NFIELDS; f++) {
			float *x = &norm[d * HOTEL__NFIELDS + f];
			double b = 1.0;
			if (ix->avglen[f] > 0) {
				b = 1.0 - HOTEL__BM25_B
				    + HOTEL__BM25_B * (double) *x
				        / ix->avglen[f];
			}
			*x = (float) (hotel__field_weight[f] / b);
		}
	}
	/* idf per term, by rank. */
	idf = hotel__alloc(&scratch, (nt ? nt : 1) * sizeof(double));
	if (idf == NULL) {
		goto out;
	}
	for (i = 0; i < nt; i++) {
		idf[i] = hotel__idf(
		    n, (size_t) (ix->post_off[i + 1] - ix->post_off[i]));
	}

	/* Scatter each document's pairs to its terms' lists, scored:
	 * documents in increasing order, so every list comes out sorted. */
	ix->post = hotel__alloc(mem, ix->n_post * sizeof(hotel__posting));
	if (ix->post == NULL) {
		goto out;
	}
	for (size_t d = 0; d < n; d++) {
		const float *nm = norm + d * HOTEL__NFIELDS;
		for (uint64_t k = doc_start[d]; k < doc_start[d + 1]; k++) {
			uint32_t        r = rank[tmp[k].tid];
			hotel__posting *p = &ix->post[cursor[r]++];
			double          tf = tmp[k].tf[0] * (double) nm[0]
			    + tmp[k].tf[1] * (double) nm[1]
			    + tmp[k].tf[2] * (double) nm[2]
			    + tmp[k].tf[3] * (double) nm[3];
			p->doc = (uint32_t) d;
			p->score = (float) (idf[r] * tf * (HOTEL__BM25_K1 + 1)
			    / (HOTEL__BM25_K1 + tf));
		}
	}
	ix->bytes = mem->bytes - before;
	rv = HOTEL_OK;

out:
	free(kt);
	hotel__free(&scratch, tmp, tmp_cap * sizeof(tmp_pair));
	hotel__free(&scratch, norm, n * HOTEL__NFIELDS * sizeof(float));
	hotel__free(&scratch, idf, (nt ? nt : 1) * sizeof(double));
	hotel__free(&scratch, doc_start, (n + 1) * sizeof(uint64_t));
	hotel__free(&scratch, occ.v, occ.cap * sizeof(uint64_t));
	hotel__free(&scratch, df, df_cap * sizeof(uint32_t));
	hotel__free(&scratch, order, nt * sizeof(uint32_t));
	hotel__free(&scratch, rank, nt * sizeof(uint32_t));
	hotel__free(&scratch, cursor, (nt + 1) * sizeof(uint64_t));
	hotel__strmap_fini(&map);
	if (rv != HOTEL_OK) {
		hotel__index_fini(ix, mem);
	}
	return (rv);
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
