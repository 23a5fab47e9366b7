/*
 * Search: query words, filters, ranking, paging and facets over one
 * dataset.
 *
 * DESIGN
 * ------
 * A query runs on the calling thread against an immutable dataset; all its
 * state lives on the stack or in per-query allocations, so any number run
 * at once. Plan:
 *
 *   1. Fold and split the text (text.c). All words but the last must be
 *      exact terms (binary search in the dictionary), the last is a prefix
 *      (a range of terms). A missing exact term or an empty range means no
 *      hits.
 *   2. The prefix's postings become one list sorted by doc with, per doc,
 *      the best score of its expansions: the term's own list if the range
 *      has one term; a k-way merge when the range's postings are few; a
 *      dense score array over all documents when they are many.
 *   3. The lists are intersected leapfrog-style, the shortest leading and
 *      the others galloping (exponential then binary search) to its doc.
 *      With no words, every document (or, with a geo filter, only those in
 *      the latitude band, through the dataset's latitude order) is a
 *      candidate.
 *   4. Each candidate goes through the filters (stars, price, amenities,
 *      then a latitude band test and the haversine distance), is counted
 *      (total, facets) and offered to a bounded heap holding the best
 *      offset + page_size hits in the requested order; the heap is sorted
 *      at the end and the page cut from it. The order is total: every sort
 *      key ends with the doc, which is the id order.
 *
 * The stop (deadline, cancel) is looked at every HOTEL_STOP_EVERY documents
 * or postings visited (stop.h); once it holds the query unwinds, frees what
 * it allocated and fails with HOTEL_ECANCELED or HOTEL_EDEADLINE.
 *
 * Page tokens: 16 hex digits of the query hash, 16 of the dataset id, then
 * the offset in hex. Not signed: a client forging an offset only gets
 * another page of its own query.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "stop.h"
#include "text.h"

_Static_assert(sizeof(hotel__posting) == 2 * sizeof(uint32_t),
    "postings are read as pairs of uint32");

/* One hit, keyed for the requested order: (k1, k2, doc) ascending. */
typedef struct item {
	uint64_t k1;
	uint32_t k2;
	uint32_t doc;
	double   score;
	double   dist;
} item;

typedef struct run {
	const hotel_dataset *ds;
	const hotel_query   *q;
	/* Filters. */
	int      min_stars;
	int64_t  max_price;
	uint32_t amen;
	bool     has_geo;
	double   dlat;      /* latitude band half-width, degrees */
	bool     lon_check; /* dlon is usable (the band misses the poles) */
	double   dlon;      /* longitude half-width, degrees, over the band */
	/* Collection. */
	item         *heap;    /* max-heap: root is the last in order */
	bool          ordered; /* hits come in result order: heap is a list */
	size_t        n, cap;
	uint64_t      total;
	uint64_t      stars[6];
	uint32_t     *city_counts; /* with facets */
	hotel__ticker stop;
} run;

static inline bool
item_before(const item *a, const item *b)
{
	if (a->k1 != b->k1) {
		return (a->k1 < b->k1);
	}
	if (a->k2 != b->k2) {
		return (a->k2 < b->k2);
	}
	return (a->doc < b->doc);
}

static int
item_cmp(const void *a, const void *b)
{
	return (item_before(a, b) ? -1 : item_before(b, a) ? 1 : 0);
}

static inline uint64_t
dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return (u);
}

static inline bool
pass(const run *r, uint32_t doc, double *distp)
{
	const hotel_dataset *ds = r->ds;

	if (ds->stars[doc] < r->min_stars
	    || (r->max_price > 0 && ds->price[doc] > r->max_price)
	    || (ds->amenities[doc] & r->amen) != r->amen) {
		return (false);
	}
	if (r->has_geo) {
		const hotel *h = &ds->hotels[doc];
		double       d;
		if (fabs(h->latitude - r->q->lat) > r->dlat) {
			return (false);
		}
		if (r->lon_check) {
			double dl = fabs(h->longitude - r->q->lon);
			if (dl > 180.0) {
				dl = 360.0 - dl; /* across the antimeridian */
			}
			if (dl > r->dlon) {
				return (false);
			}
		}
		d = hotel_distance_km(
		    r->q->lat, r->q->lon, h->latitude, h->longitude);
		if (d > r->q->radius_km) {
			return (false);
		}
		*distp = d;
	}
	return (true);
}

static inline void
heap_down(item *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && item_before(&h[m], &h[l])) {
			m = l;
		}
		if (l + 1 < n && item_before(&h[m], &h[l + 1])) {
			m = l + 1;
		}
		if (m == i) {
			return;
		}
		item t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static inline void
collect(run *r, uint32_t doc, double score, double dist)
{
	const hotel_dataset *ds = r->ds;
	item                 it;

	r->total++;
	if (r->city_counts != NULL) {
		r->stars[ds->stars[doc]]++;
		r->city_counts[ds->city_of[doc]]++;
	}
	if (r->cap == 0) {
		return;
	}
	it.doc = doc;
	it.score = score;
	it.dist = dist;
	it.k2 = 0;
	switch (r->q->sort) {
	case HOTEL_SORT_RATING:
		it.k1 = ~dbits(ds->hotels[doc].rating);
		it.k2 = ~ds->hotels[doc].review_count;
		break;
	case HOTEL_SORT_PRICE:
		it.k1 = (uint64_t) ds->price[doc];
		break;
	case HOTEL_SORT_DISTANCE:
		it.k1 = dbits(dist);
		break;
	default:
		it.k1 = ~dbits(score);
		break;
	}
	if (r->n < r->cap) {
		size_t i = r->n++;
		r->heap[i] = it;
		while (i > 0) {
			size_t p = (i - 1) / 2;
			if (!item_before(&r->heap[p], &r->heap[i])) {
				break;
			}
			item t = r->heap[p];
			r->heap[p] = r->heap[i];
			r->heap[i] = t;
			i = p;
		}
	} else if (item_before(&it, &r->heap[0])) {
		r->heap[0] = it;
		heap_down(r->heap, r->n, 0);
	}
}

/* ---- candidates with no words ------------------------------------------ */

static void
scan_all(run *r)
{
	const hotel_dataset *ds = r->ds;
	double               dist = 0;
	uint32_t             work = 0; /* for hotel__tick() */

	if (r->has_geo) {
		/* Only the latitude band [lat - dlat, lat + dlat]. */
		double lo = r->q->lat - r->dlat, hi = r->q->lat + r->dlat;
		size_t a = 0, b = ds->n;
		while (a < b) {
			size_t mid = a + (b - a) / 2;
			if (ds->lat_sorted[mid] < lo) {
				a = mid + 1;
			} else {
				b = mid;
			}
		}
		for (size_t i = a; i < ds->n && ds->lat_sorted[i] <= hi; i++) {
			uint32_t doc = ds->lat_order[i];
			if (hotel__tick(&r->stop, ++work)) {
				return;
			}
			/* The longitude window from the band's own array,
			 * before touching the hotel. */
			if (r->lon_check) {
				double dl
				    = fabs(ds->lon_by_lat[i] - r->q->lon);
				if ((dl > 180.0 ? 360.0 - dl : dl) > r->dlon) {
					continue;
				}
			}
			if (pass(r, doc, &dist)) {
				collect(r, doc, 0.0, dist);
			}
		}
		return;
	}
	/* Walk the documents in the requested order (id order is doc
	 * order), so the first cap that pass are the page: no heap. With no
	 * filters and no facets the total is known and the walk stops at the
	 * page. */
	const uint32_t *order = r->q->sort == HOTEL_SORT_RATING
	    ? ds->rating_order
	    : r->q->sort == HOTEL_SORT_PRICE ? ds->price_order
	                                     : NULL;
	bool            unfiltered = r->min_stars <= 1 && r->max_price == 0
	    && r->amen == 0 && r->city_counts == NULL;

	r->ordered = true;
	for (size_t i = 0; i < ds->n; i++) {
		uint32_t d = order != NULL ? order[i] : (uint32_t) i;
		if (unfiltered && r->n == r->cap) {
			r->total = ds->n;
			return;
		}
		if (hotel__tick(&r->stop, ++work)) {
			return;
		}
		if (pass(r, d, &dist)) {
			collect(r, d, 0.0, dist);
		}
	}
}

/* ---- candidates from words ---------------------------------------------- */

/* A list of docs sorted ascending: a term's postings (stride 2, scores in
 * the postings) or a prefix union (stride 1, scores beside). */
typedef struct list {
	const uint32_t       *docs;
	size_t                stride;
	size_t                n, pos;
	const hotel__posting *post;
	const float          *scores;
} list;

static inline uint32_t
doc_at(const list *l, size_t i)
{
	return (l->docs[i * l->stride]);
}

/* First position >= pos whose doc is >= target (or l->n). */
static inline size_t
gallop(const list *l, size_t pos, uint32_t target)
{
	size_t step = 1, lo, hi;

	if (pos >= l->n || doc_at(l, pos) >= target) {
		return (pos);
	}
	lo = pos; /* doc_at(lo) < target */
	while (lo + step < l->n && doc_at(l, lo + step) < target) {
		lo += step;
		step *= 2;
	}
	hi = lo + step < l->n ? lo + step : l->n;
	lo++;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (doc_at(l, mid) < target) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return (lo);
}

static void
term_list(const hotel__index *ix, size_t t, list *l)
{
	size_t a = (size_t) ix->post_off[t], b = (size_t) ix->post_off[t + 1];

	l->post = ix->post + a;
	l->docs = &ix->post[a].doc;
	l->stride = 2;
	l->n = b - a;
	l->pos = 0;
	l->scores = NULL;
}

/* A k-way merge cursor. */
typedef struct cursor {
	const hotel__posting *p, *end;
} cursor;

static inline bool
cur_before(const cursor *a, const cursor *b)
{
	return (a->p->doc < b->p->doc);
}

static void
cur_down(cursor *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && cur_before(&h[l], &h[m])) {
			m = l;
		}
		if (l + 1 < n && cur_before(&h[l + 1], &h[m])) {
			m = l + 1;
		}
		if (m == i) {
			return;
		}
		cursor t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* ---- per-thread scratch --------------------------------------------------
 *
 * A prefix union needs arrays as large as the dataset. Allocated per query,
 * they come back from the kernel every time (mmap, page faults, zeroing),
 * which cost more than the query; so each thread keeps one of each, up to
 * SCRATCH_KEEP bytes (bigger ones are allocated per query), freed when the
 * thread exits (a pthread key destructor). Slot ACC is all zeros whenever it
 * is not in use. A thread runs one query at a time, so nothing is shared. */
#define SCRATCH_KEEP (1u << 20)

enum { SLOT_ACC, SLOT_BUF, NSLOTS };

static _Thread_local void  *tls_slot[NSLOTS];
static _Thread_local size_t tls_cap[NSLOTS];
static pthread_key_t        scratch_key;
static pthread_once_t       scratch_once = PTHREAD_ONCE_INIT;
static bool                 scratch_ok;

static void
scratch_exit(void *arg)
{
	(void) arg;
	for (int i = 0; i < NSLOTS; i++) {
		free(tls_slot[i]);
		tls_slot[i] = NULL;
		tls_cap[i] = 0;
	}
}

static void
scratch_init(void)
{
	scratch_ok = pthread_key_create(&scratch_key, scratch_exit) == 0;
}

/* Returns bytes of scratch (zeroed for SLOT_ACC), or NULL. */
static void *
scratch_get(int slot, size_t bytes)
{
	void *p;

	if (bytes <= tls_cap[slot]) {
		return (tls_slot[slot]);
	}
	p = slot == SLOT_ACC ? calloc(1, bytes) : malloc(bytes);
	if (p == NULL || bytes > SCRATCH_KEEP) {
		return (p);
	}
	pthread_once(&scratch_once, scratch_init);
	if (!scratch_ok || pthread_setspecific(scratch_key, &tls_slot) != 0) {
		return (p);
	}
	free(tls_slot[slot]);
	tls_slot[slot] = p;
	tls_cap[slot] = bytes;
	return (p);
}

/* Gives back what scratch_get() returned (SLOT_ACC zeroed again). */
static void
scratch_put(int slot, void *p)
{
	if (p != NULL && p != tls_slot[slot]) {
		free(p);
	}
}

/* Builds the union of terms [lo, hi), whose postings are few, into l by a
 * k-way merge; its arrays are SLOT_BUF scratch (*bufp, for scratch_put).
 * Returns HOTEL_OK, HOTEL_ENOMEM or the stop's reason. */
static int
prefix_merge(run *r, size_t lo, size_t hi, list *l, void **bufp)
{
	const hotel__index *ix = &r->ds->index;
	uint32_t            work = 0;
	size_t    total = (size_t) (ix->post_off[hi] - ix->post_off[lo]);
	size_t    k = 0, nc = 0;
	uint32_t *docs;
	float    *scores;
	char     *buf;
	cursor   *h;

	buf = scratch_get(
	    SLOT_BUF, (total + 1) * (sizeof(float) + sizeof(uint32_t)));
	if (buf == NULL) {
		return (HOTEL_ENOMEM);
	}
	*bufp = buf;
	scores = (float *) buf;
	docs = (uint32_t *) (buf + (total + 1) * sizeof(float));
	if ((h = malloc((hi - lo) * sizeof(cursor))) == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t t = lo; t < hi; t++) {
		size_t a = (size_t) ix->post_off[t];
		size_t b = (size_t) ix->post_off[t + 1];
		if (a < b) {
			h[nc].p = ix->post + a;
			h[nc].end = ix->post + b;
			nc++;
		}
	}
	for (size_t i = nc; i-- > 0;) {
		cur_down(h, nc, i);
	}
	while (nc > 0) {
		uint32_t doc = h[0].p->doc;
		float    s = h[0].p->score;
		if (hotel__tick(&r->stop, ++work)) {
			free(h);
			return (r->stop.rv);
		}
		if (k > 0 && docs[k - 1] == doc) {
			scores[k - 1] = s > scores[k - 1] ? s : scores[k - 1];
		} else {
			docs[k] = doc;
			scores[k] = s;
			k++;
		}
		if (++h[0].p == h[0].end) {
			h[0] = h[--nc];
		}
		cur_down(h, nc, 0);
	}
	free(h);
	l->docs = docs;
	l->stride = 1;
	l->n = k;
	l->pos = 0;
	l->post = NULL;
	l->scores = scores;
	return (HOTEL_OK);
}

/* The union of a prefix with many postings, as a dense array over the
 * documents: acc[d] is d's best score among the prefix's terms, or 0 if it
 * has none (scores are > 0). Membership is then one load, so the exact
 * words' lists drive the intersection and nothing is compacted. */
typedef struct dense {
	float   *acc;        /* SLOT_ACC scratch, or NULL */
	uint32_t mind, maxd; /* the documents touched */
} dense;

static void
dense_done(dense *dn)
{
	if (dn->acc != NULL) {
		if (dn->mind <= dn->maxd) {
			memset(dn->acc + dn->mind, 0,
			    (size_t) (dn->maxd - dn->mind + 1)
			        * sizeof(float));
		}
		scratch_put(SLOT_ACC, dn->acc);
		dn->acc = NULL;
	}
}

static int
prefix_dense(run *r, size_t lo, size_t hi, dense *dn)
{
	const hotel__index *ix = &r->ds->index;
	uint32_t            work = 0;
	size_t              n_docs = ix->n_docs;

	dn->mind = UINT32_MAX;
	dn->maxd = 0;
	dn->acc = scratch_get(SLOT_ACC, (n_docs ? n_docs : 1) * sizeof(float));
	if (dn->acc == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t t = lo; t < hi; t++) {
		const hotel__posting *p = ix->post + ix->post_off[t];
		const hotel__posting *end = ix->post + ix->post_off[t + 1];
		float                *acc = dn->acc;
		if (p == end) {
			continue;
		}
		dn->mind = p->doc < dn->mind ? p->doc : dn->mind;
		dn->maxd = end[-1].doc > dn->maxd ? end[-1].doc : dn->maxd;
		for (; p < end; p++) {
			float *a = &acc[p->doc];
			if (hotel__tick(&r->stop, ++work)) {
				return (r->stop.rv); /* dense_done() cleans */
			}
			*a = p->score > *a ? p->score : *a;
		}
	}
	return (HOTEL_OK);
}

static int
list_len_cmp(const void *a, const void *b)
{
	const list *x = a, *y = b;
	return (x->n < y->n ? -1 : x->n > y->n);
}

/* The lists a query's words give: one per distinct exact word, then the
 * last word's prefix as one term's list, a merged list or a dense array
 * (dn.acc, when nl counts only the exact words). */
typedef struct word_lists {
	list   lists[HOTEL_MAX_WORDS];
	size_t nl;
	void  *ubuf; /* a merged prefix's SLOT_BUF scratch */
	dense  dn;
} word_lists;

/* Fills wl->lists with the exact words' lists, deduplicated. Returns false
 * when one is not in the dictionary (no hits). */
static bool
exact_lists(const hotel__index *ix, char words[][HOTEL__TOKEN_MAX],
    const size_t *lens, size_t nw, word_lists *wl)
{
	for (size_t i = 0; i + 1 < nw; i++) {
		int64_t t = hotel__index_find(ix, words[i], lens[i]);
		bool    dup = false;
		if (t < 0) {
			return (false);
		}
		for (size_t j = 0; j < wl->nl; j++) {
			if (wl->lists[j].post == ix->post + ix->post_off[t]) {
				dup = true;
			}
		}
		if (!dup) {
			term_list(ix, (size_t) t, &wl->lists[wl->nl++]);
		}
	}
	return (true);
}

/* The last word, as a prefix: one term's list, a merged list (few
 * postings), or a dense array (many). *emptyp when no term has it. */
static int
prefix_list(run *r, const char *p, size_t len, word_lists *wl, bool *emptyp)
{
	const hotel__index *ix = &r->ds->index;
	size_t              lo, hi, total;
	int                 rv;

	hotel__index_prefix(ix, p, len, &lo, &hi);
	*emptyp = lo == hi;
	if (lo == hi) {
		return (HOTEL_OK);
	}
	total = (size_t) (ix->post_off[hi] - ix->post_off[lo]);
	if (hi - lo == 1) {
		term_list(ix, lo, &wl->lists[wl->nl++]);
		return (HOTEL_OK);
	}
	if (total * 32 < ix->n_docs) {
		if ((rv = prefix_merge(
		         r, lo, hi, &wl->lists[wl->nl], &wl->ubuf))
		    == HOTEL_OK) {
			wl->nl++;
		}
		return (rv);
	}
	return (prefix_dense(r, lo, hi, &wl->dn));
}

/* Only a dense prefix: its documents, in order. Out of line, so that the
 * loop gets registers of its own instead of sharing hotel_search()'s
 * spills (inlined, the prefix queries of make engine-bench ran 4% slower).
 */
static __attribute__((noinline)) int
scan_dense(run *r, const dense *dn)
{
	const float   *acc = dn->acc; /* locals: collect() stores through r */
	const uint32_t mind = dn->mind, maxd = dn->maxd;
	double         dist = 0;
	uint32_t       work = 0;

	for (uint32_t d = mind; d <= maxd && mind <= maxd; d++) {
		if (hotel__tick(&r->stop, ++work)) {
			return (r->stop.rv);
		}
		if (acc[d] > 0 && pass(r, d, &dist)) {
			collect(r, d, acc[d], dist);
		}
		if (d == UINT32_MAX) {
			break;
		}
	}
	return (HOTEL_OK);
}

/* Leapfrog over lists[0..nl), sorted shortest first: the shortest list
 * leads, the others gallop to its doc; a doc in all of them must also be
 * in the dense prefix, if any. */
static int
leapfrog(run *r, list *lists, size_t nl, const dense *dn)
{
	const float *acc = dn->acc; /* NULL without a dense prefix */
	double       dist = 0;
	uint32_t     work = 0;
	uint32_t     cand;

	if (lists[0].n == 0) {
		return (HOTEL_OK);
	}
	cand = doc_at(&lists[0], 0);
	for (;;) {
		size_t j;
		if (hotel__tick(&r->stop, ++work)) {
			return (r->stop.rv);
		}
		for (j = 1; j < nl; j++) {
			list *l = &lists[j];
			l->pos = gallop(l, l->pos, cand);
			if (l->pos == l->n) {
				return (HOTEL_OK);
			}
			if (doc_at(l, l->pos) != cand) {
				break;
			}
		}
		if (j == nl && (acc == NULL || acc[cand] > 0)
		    && pass(r, cand, &dist)) {
			double score = acc != NULL ? acc[cand] : 0.0;
			for (j = 0; j < nl; j++) {
				const list *l = &lists[j];
				score += l->scores != NULL
				    ? l->scores[l->pos]
				    : (double) l->post[l->pos].score;
			}
			collect(r, cand, score, dist);
			j = nl;
		}
		/* Advance the leader: past cand, or to the doc another
		 * list jumped to. */
		if (j < nl) {
			lists[0].pos = gallop(&lists[0], lists[0].pos,
			    doc_at(&lists[j], lists[j].pos));
		} else {
			lists[0].pos++;
		}
		if (lists[0].pos == lists[0].n) {
			return (HOTEL_OK);
		}
		cand = doc_at(&lists[0], lists[0].pos);
	}
}

static int
search_words(
    run *r, char words[][HOTEL__TOKEN_MAX], const size_t *lens, size_t nw)
{
	word_lists wl = { .nl = 0, .ubuf = NULL, .dn = { NULL, 1, 0 } };
	bool       empty;
	int        rv;

	if (!exact_lists(&r->ds->index, words, lens, nw, &wl)) {
		return (HOTEL_OK); /* no hits */
	}
	rv = prefix_list(r, words[nw - 1], lens[nw - 1], &wl, &empty);
	if (rv == HOTEL_OK && !empty) {
		if (wl.nl == 0) {
			rv = scan_dense(r, &wl.dn);
		} else {
			qsort(wl.lists, wl.nl, sizeof(list), list_len_cmp);
			rv = leapfrog(r, wl.lists, wl.nl, &wl.dn);
		}
	}
	dense_done(&wl.dn);
	scratch_put(SLOT_BUF, wl.ubuf);
	return (rv);
}

/* ---- the query -------------------------------------------------------------
 */

static uint64_t
query_hash(const hotel_query *q, char words[][HOTEL__TOKEN_MAX],
    const size_t *lens, size_t nw)
{
	uint64_t h = hotel__hash_u64(UINT64_C(0x7175657279), nw);

	for (size_t i = 0; i < nw; i++) {
		h = hotel__hash(words[i], lens[i], h);
	}
	h = hotel__hash_u64(h, q->has_geo);
	if (q->has_geo) {
		h = hotel__hash_u64(h, dbits(q->lat));
		h = hotel__hash_u64(h, dbits(q->lon));
		h = hotel__hash_u64(h, dbits(q->radius_km));
	}
	h = hotel__hash_u64(h, (uint64_t) q->min_stars);
	h = hotel__hash_u64(h, (uint64_t) q->max_price_cents);
	h = hotel__hash_u64(h, q->amenities_all);
	h = hotel__hash_u64(h, (uint64_t) q->sort);
	return (h);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return (c - '0');
	}
	if (c >= 'a' && c <= 'f') {
		return (c - 'a' + 10);
	}
	return (-1);
}

/* Parses hex digits s[0..n) into *vp (n <= 16). */
static bool
parse_hex(const char *s, size_t n, uint64_t *vp)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		int x = hexval(s[i]);
		if (x < 0) {
			return (false);
		}
		v = v << 4 | (uint64_t) x;
	}
	*vp = v;
	return (true);
}

static int
parse_token(const hotel_dataset *ds, const char *tok, uint64_t qhash,
    uint64_t *offp, char *err, size_t errlen)
{
	size_t   len = strlen(tok);
	uint64_t th, tds, off;

	if (len < 33 || len > 40 || !parse_hex(tok, 16, &th)
	    || !parse_hex(tok + 16, 16, &tds)
	    || !parse_hex(tok + 32, len - 32, &off) || off == 0
	    || off > UINT32_MAX) {
		return (hotel__err(
		    HOTEL_EINVAL, err, errlen, "page_token: malformed"));
	}
	if (th != qhash) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "page_token: from a different query"));
	}
	if (tds != ds->id_hash) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "page_token: stale, the dataset has been reloaded"));
	}
	*offp = off;
	return (HOTEL_OK);
}

static int
check_query(const hotel_query *q, char *err, size_t errlen)
{
	if (q->page_size < 1 || q->page_size > HOTEL_PAGE_SIZE_MAX) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "page_size: must be 1..%d, got %u", HOTEL_PAGE_SIZE_MAX,
		    (unsigned) q->page_size));
	}
	if (q->min_stars < 0 || q->min_stars > 5) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "min_stars: must be 0..5, got %d", q->min_stars));
	}
	if (q->max_price_cents < 0) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "max_price_cents: must be >= 0, got %lld",
		    (long long) q->max_price_cents));
	}
	if ((q->amenities_all & ~(uint32_t) HOTEL_AMENITY_ALL) != 0) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "amenities_all: unknown bits 0x%x",
		    (unsigned) (q->amenities_all
		        & ~(uint32_t) HOTEL_AMENITY_ALL)));
	}
	if ((unsigned) q->sort >= HOTEL_SORT_COUNT) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "sort: unknown value %d", (int) q->sort));
	}
	if (q->has_geo) {
		if (!(q->lat >= -90.0 && q->lat <= 90.0)) {
			return (hotel__err(HOTEL_EINVAL, err, errlen,
			    "lat: must be -90..90, got %g", q->lat));
		}
		if (!(q->lon >= -180.0 && q->lon <= 180.0)) {
			return (hotel__err(HOTEL_EINVAL, err, errlen,
			    "lon: must be -180..180, got %g", q->lon));
		}
		if (!(q->radius_km > 0.0) || isinf(q->radius_km)) {
			return (hotel__err(HOTEL_EINVAL, err, errlen,
			    "radius_km: must be > 0, got %g", q->radius_km));
		}
	} else if (q->sort == HOTEL_SORT_DISTANCE) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "sort: DISTANCE needs a geo centre"));
	}
	if (q->top_cities > HOTEL_TOP_CITIES_MAX) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "top_cities: must be 0..%d, got %u", HOTEL_TOP_CITIES_MAX,
		    (unsigned) q->top_cities));
	}
	return (HOTEL_OK);
}

typedef struct city_rank {
	uint32_t           city;
	uint32_t           count;
	const hotel__city *c;
} city_rank;

static int
city_rank_cmp(const void *a, const void *b)
{
	const city_rank *x = a, *y = b;
	int              c;
	if (x->count != y->count) {
		return (x->count > y->count ? -1 : 1);
	}
	if ((c = strcmp(x->c->name, y->c->name)) != 0) {
		return (c);
	}
	if ((c = strcmp(x->c->country, y->c->country)) != 0) {
		return (c);
	}
	return (x->city < y->city ? -1 : x->city > y->city);
}

/* Splits q->text into folded words (at most HOTEL_MAX_WORDS). */
static int
query_words(const hotel_query *q, char words[][HOTEL__TOKEN_MAX], size_t *lens,
    size_t *nwp, char *err, size_t errlen)
{
	hotel__tokenizer t;
	size_t           nw = 0, len;

	if (q->text != NULL) {
		hotel__tok_init(&t, q->text, strlen(q->text));
		while ((len = hotel__tok_next(&t,
		            words[nw < HOTEL_MAX_WORDS ? nw
		                                       : HOTEL_MAX_WORDS - 1]))
		    > 0) {
			if (nw == HOTEL_MAX_WORDS) {
				return (hotel__err(HOTEL_EINVAL, err, errlen,
				    "text: more than %d words",
				    HOTEL_MAX_WORDS));
			}
			lens[nw++] = len;
		}
	}
	*nwp = nw;
	return (HOTEL_OK);
}

/* The filters, with the geo filter's latitude band and longitude window. */
static void
set_filters(run *r, const hotel_query *q)
{
	r->min_stars = q->min_stars;
	r->max_price = q->max_price_cents;
	r->amen = q->amenities_all;
	r->has_geo = q->has_geo;
	/* Degrees of latitude spanned by the radius, with a little slack so
	 * the band never cuts off a hotel the haversine accepts. */
	r->dlat = q->radius_km / (HOTEL_EARTH_RADIUS_KM * M_PI / 180.0) * 1.001
	    + 1e-9;
	/* Longitude slack: at latitude m a km spans 1/cos(m) times more
	 * degrees; m is the band's edge nearest a pole, which bounds it for
	 * every point in the band (and, for a circle, over-covers asin(sin(d)
	 * / cos(lat))). Near a pole, no longitude test. */
	if (q->has_geo) {
		double m = fabs(q->lat) + r->dlat;
		if (m < 89.0) {
			r->dlon
			    = r->dlat / cos(m * M_PI / 180.0) * 1.01 + 1e-9;
			r->lon_check = r->dlon < 180.0;
		}
	}
}

/* The heap for the best offset + page_size hits, and the city counts when
 * the query wants facets. Returns HOTEL_OK or HOTEL_ENOMEM. */
static int
alloc_collection(run *r, uint64_t offset)
{
	const hotel_dataset *ds = r->ds;

	r->cap = (size_t) offset + r->q->page_size;
	if (r->cap > ds->n) {
		r->cap = ds->n;
	}
	if ((r->heap = malloc((r->cap ? r->cap : 1) * sizeof(item))) == NULL) {
		return (HOTEL_ENOMEM);
	}
	if (r->q->facets
	    && (r->city_counts
	           = calloc(ds->n_cities ? ds->n_cities : 1, sizeof(uint32_t)))
	        == NULL) {
		return (HOTEL_ENOMEM);
	}
	return (HOTEL_OK);
}

/* The city facet: the cities with hits, by count, cut to top_cities.
 * Returns new in *ranksp (malloc'd), or HOTEL_ENOMEM. */
static int
rank_cities(const run *r, city_rank **ranksp, size_t *np)
{
	const hotel_dataset *ds = r->ds;
	size_t               n = 0, top;
	city_rank           *ranks;

	top = r->q->top_cities ? r->q->top_cities : HOTEL_TOP_CITIES_DEF;
	ranks = malloc((ds->n_cities ? ds->n_cities : 1) * sizeof(city_rank));
	if (ranks == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < ds->n_cities; i++) {
		if (r->city_counts[i] > 0) {
			ranks[n++] = (city_rank) { (uint32_t) i,
				r->city_counts[i], &ds->cities[i] };
		}
	}
	qsort(ranks, n, sizeof(city_rank), city_rank_cmp);
	*ranksp = ranks;
	*np = n > top ? top : n;
	return (HOTEL_OK);
}

/* Fills a result from the sorted hits and the facets: the page is
 * heap[offset ..], ranks[0 .. n_cities) the city facet. Returns new
 * (hotel_result_free()), or NULL when out of memory. */
static hotel_result *
make_result(const run *r, uint64_t offset, uint64_t qhash,
    const city_rank *ranks, size_t n_cities)
{
	const hotel_dataset *ds = r->ds;
	size_t               n_page = 0;
	hotel_result        *res;

	if (offset < r->n) {
		n_page = r->n - (size_t) offset;
		n_page = n_page > r->q->page_size ? r->q->page_size : n_page;
	}
	res = malloc(sizeof(*res) + n_page * sizeof(hotel_hit)
	    + n_cities * sizeof(hotel_city_count));
	if (res == NULL) {
		return (NULL);
	}
	memset(res, 0, sizeof(*res));
	res->hits = n_page > 0 ? (hotel_hit *) (res + 1) : NULL;
	res->cities = n_cities > 0
	    ? (hotel_city_count *) ((hotel_hit *) (res + 1) + n_page)
	    : NULL;
	res->n_hits = n_page;
	res->total = r->total;
	for (size_t i = 0; i < n_page; i++) {
		const item *it = &r->heap[offset + i];
		res->hits[i].hotel = &ds->hotels[it->doc];
		res->hits[i].score = it->score;
		res->hits[i].distance_km = it->dist;
	}
	if (offset + n_page < r->total) {
		snprintf(res->next_page_token, sizeof(res->next_page_token),
		    "%016llx%016llx%llx", (unsigned long long) qhash,
		    (unsigned long long) ds->id_hash,
		    (unsigned long long) (offset + n_page));
	}
	if (r->q->facets) {
		res->has_facets = true;
		memcpy(res->stars_facet, r->stars, sizeof(r->stars));
		res->n_cities = n_cities;
		for (size_t i = 0; i < n_cities; i++) {
			res->cities[i].city = ranks[i].c->name;
			res->cities[i].country = ranks[i].c->country;
			res->cities[i].count = ranks[i].count;
		}
	}
	return (res);
}

/* Collects the hits: every document (no words) or the words' matches.
 * Returns HOTEL_OK, HOTEL_ENOMEM or the stop's reason. */
static int
execute(run *r, char words[][HOTEL__TOKEN_MAX], const size_t *lens, size_t nw)
{
	int rv = HOTEL_OK;

	if (nw == 0) {
		scan_all(r);
	} else {
		rv = search_words(r, words, lens, nw);
	}
	return (rv != HOTEL_OK ? rv : r->stop.rv);
}

int
hotel_search(const hotel_dataset *ds, const hotel_query *q,
    hotel_result **resultp, char *err, size_t errlen)
{
	char          words[HOTEL_MAX_WORDS][HOTEL__TOKEN_MAX];
	size_t        lens[HOTEL_MAX_WORDS], nw = 0, n_cities = 0;
	run           r;
	uint64_t      qhash, offset = 0;
	city_rank    *ranks = NULL;
	hotel_result *res = NULL;
	int           rv;

	if (ds == NULL || q == NULL || resultp == NULL) {
		return (
		    hotel__err(HOTEL_EINVAL, err, errlen, "NULL argument"));
	}
	if ((rv = check_query(q, err, errlen)) != HOTEL_OK) {
		return (rv);
	}
	memset(&r, 0, sizeof(r));
	r.ds = ds;
	r.q = q;
	hotel__ticker_init(&r.stop, &q->stop, NULL);
	if ((rv = hotel__ticker_poll(&r.stop)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	if ((rv = query_words(q, words, lens, &nw, err, errlen)) != HOTEL_OK) {
		return (rv);
	}
	qhash = query_hash(q, words, lens, nw);
	if (q->page_token != NULL && q->page_token[0] != '\0'
	    && (rv = parse_token(
	            ds, q->page_token, qhash, &offset, err, errlen))
	        != HOTEL_OK) {
		return (rv);
	}
	set_filters(&r, q);
	if ((rv = alloc_collection(&r, offset)) == HOTEL_OK
	    && (rv = execute(&r, words, lens, nw)) == HOTEL_OK) {
		qsort(r.heap, r.n, sizeof(item), item_cmp);
		if (!q->facets
		    || (rv = rank_cities(&r, &ranks, &n_cities)) == HOTEL_OK) {
			res = make_result(&r, offset, qhash, ranks, n_cities);
			rv = res != NULL ? HOTEL_OK : HOTEL_ENOMEM;
		}
	}
	free(ranks);
	free(r.heap);
	free(r.city_counts);
	if (rv != HOTEL_OK) {
		/* "out of memory", "cancelled" or "deadline exceeded" */
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	*resultp = res;
	return (HOTEL_OK);
}

void
hotel_result_free(hotel_result *result)
{
	free(result);
}
