/*
 * The inverted index: token -> posting list of (document, per-field term
 * frequencies), with a sorted term dictionary for exact and prefix lookups
 * and BM25F scores precomputed per posting.
 */
#ifndef ENGINE_INDEX_H
#define ENGINE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "hotel.h"
#include "mem.h"

/* Fields, in the order of hotel__field_weight[]. */
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
 * dataset's id-sorted hotel array, so doc order is id order. A term's BM25F
 * score in a document depends on nothing in the query, so it is computed at
 * build time and stored in place of the term frequencies. */
typedef struct hotel__posting {
	uint32_t doc;
	float    score; /* BM25F of this term in this document */
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
	double          avglen[HOTEL__NFIELDS];
	size_t bytes; /* counted in the dataset's mem, reported apart */
} hotel__index;

struct hotel__ticker;

/* Builds the index over hotels[0..n) (doc i = hotels[i]); the index's
 * arrays are counted in mem. Returns HOTEL_OK, HOTEL_ENOMEM or, when stop
 * holds, its reason (nothing kept allocated on failure). */
int  hotel__index_build(hotel__index *ix, hotel__mem *mem, const hotel *hotels,
     size_t n, struct hotel__ticker *stop);
void hotel__index_fini(hotel__index *ix, hotel__mem *mem);

/* Returns the term id of the token t[0..len), or -1. */
int64_t hotel__index_find(const hotel__index *ix, const char *t, size_t len);

/* Sets [*lop, *hip) to the term ids starting with p[0..len). */
void hotel__index_prefix(const hotel__index *ix, const char *p, size_t len,
    size_t *lop, size_t *hip);

/* BM25 idf of a term in df documents out of n:
 * ln(1 + (n - df + 0.5) / (df + 0.5)), always positive. */
double hotel__idf(size_t n, size_t df);

#endif /* ENGINE_INDEX_H */
