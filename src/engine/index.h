/*
 * The inverted index: token -> posting list of (document, per-field term
 * frequencies), with a sorted term dictionary for exact and prefix lookups
 * and per-document BM25F length norms.
 */
#ifndef ENGINE_INDEX_H
#define ENGINE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "hotel.h"
#include "mem.h"

/* Fields, in the order of posting tf[] and norm[]. */
enum {
	HOTEL__F_NAME,
	HOTEL__F_CITY,
	HOTEL__F_COUNTRY,
	HOTEL__F_DESC,
	HOTEL__NFIELDS
};

#define HOTEL__BM25_K1 1.2
#define HOTEL__BM25_B  0.75

/* Field weights (BM25F), in field order. */
extern const double hotel__field_weight[HOTEL__NFIELDS];

/* One document in one term's list. Documents are indices into the
 * dataset's id-sorted hotel array, so doc order is id order. */
typedef struct hotel__posting {
	uint32_t doc;
	uint8_t  tf[HOTEL__NFIELDS]; /* occurrences per field, saturating */
} hotel__posting;

typedef struct hotel__index {
	size_t n_docs;
	size_t n_terms;
	/* Term i is term_pool + term_off[i], NUL-terminated; terms are
	 * sorted by strcmp, so a prefix is a contiguous range. */
	uint32_t *term_off; /* n_terms */
	char     *term_pool;
	size_t    pool_len;
	/* Term i's postings are post[post_off[i] .. post_off[i + 1]), sorted
	 * by doc; the lists are laid out in term order, so a prefix range's
	 * postings are contiguous too. */
	uint64_t       *post_off; /* n_terms + 1 */
	hotel__posting *post;
	size_t          n_post;
	/* norm[doc * NFIELDS + f] = weight_f / (1 - b + b * len_f / avglen_f),
	 * so a document's pseudo term frequency is sum_f tf_f * norm_f. */
	float *norm;
	double avglen[HOTEL__NFIELDS];
	size_t bytes; /* counted in the dataset's mem, reported apart */
} hotel__index;

/* Builds the index over hotels[0..n) (doc i = hotels[i]); the index's
 * arrays are counted in mem. Returns HOTEL_OK or HOTEL_ENOMEM (nothing kept
 * allocated). */
int hotel__index_build(
    hotel__index *ix, hotel__mem *mem, const hotel *hotels, size_t n);
void hotel__index_fini(hotel__index *ix, hotel__mem *mem);

/* Returns the term id of the token t[0..len), or -1. */
int64_t hotel__index_find(const hotel__index *ix, const char *t, size_t len);

/* Sets [*lop, *hip) to the term ids starting with p[0..len). */
void hotel__index_prefix(const hotel__index *ix, const char *p, size_t len,
    size_t *lop, size_t *hip);

/* BM25 idf of a term in df documents out of n:
 * ln(1 + (n - df + 0.5) / (df + 0.5)), always positive. */
double hotel__idf(size_t n, size_t df);

/* BM25F score of a term with idf in the document of posting p. */
static inline double
hotel__bm25f(const hotel__index *ix, const hotel__posting *p, double idf)
{
	const float *nm = ix->norm + (size_t) p->doc * HOTEL__NFIELDS;
	double       tf = p->tf[0] * (double) nm[0] + p->tf[1] * (double) nm[1]
	    + p->tf[2] * (double) nm[2] + p->tf[3] * (double) nm[3];
	return (idf * tf * (HOTEL__BM25_K1 + 1) / (HOTEL__BM25_K1 + tf));
}

#endif /* ENGINE_INDEX_H */
