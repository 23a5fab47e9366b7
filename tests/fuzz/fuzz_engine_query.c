/*
 * fuzz_engine_query: hotel_search() and hotel_suggest() on 2000 generated
 * hotels, with the query built from the input, checked against a
 * brute-force oracle over the same hotels.
 *
 * Input layout (little-endian; tests/fuzz/make_seeds.py writes seeds):
 *   0      flags: 0x01 geo filter, 0x02 facets, 0x04 geo from a table of
 *          special doubles (NaN, inf, -0, out of range...), 0x08 fetch the
 *          next page too, 0x10 raw numbers (not brought into the valid
 *          ranges first), 0x20 a deadline already passed, 0x40 send the
 *          page token below, 0x80 cancel the search at its (1 + byte 20
 *          % 4)-th stop check (hotel_stop: the start, then one every
 *          HOTEL_STOP_EVERY documents or postings)
 *   1      sort                    2   page_size
 *   3      min_stars               4   max_price_cents (int32)
 *   8      amenities_all (uint32)  12  top_cities (uint16)
 *   14     lat (int16, *90/32767)  16  lon (int16, *180/32767)
 *   18     radius_km (uint16, /10) 20  page size of the next page and
 *                                      the suggestion limit (1 + b % 100
 *                                      unless raw)
 *   21     L, the page token's length; then L token bytes
 *   22+L   the text: query words and suggestion prefix
 *
 * Checks, beyond "no sanitizer report": the result code is one of those
 * documented, and HOTEL_EINVAL only for a query that is invalid (raw
 * numbers, special geo, a page token, too many words), HOTEL_ECANCELED only
 * for one cancelled, and only when it reached that check; on success
 *  - n_hits <= page_size, total >= n_hits;
 *  - total, and with facets the stars and city counts, equal a brute-force
 *    count of the hotels that have every word (the last as a prefix) and
 *    pass the filters; every hit is one of them, at its exact distance;
 *  - hits are in the documented order, and for the rating, price and
 *    distance sorts (and relevance with no words) the page is exactly the
 *    brute-force page;
 *  - the next page token is empty exactly on the last page, and works:
 *    the next page (with another page_size and facets, which may change)
 *    continues the order, with the same total;
 *  - the same query twice gives the same page;
 *  - suggestions equal a brute-force ranking of the cities and distinct
 *    hotel names that have a word starting with the prefix.
 * The oracle tokenises with the engine's own tokenizer (text.h), so it
 * checks the index, the intersection, paging, facets and ranking, not the
 * folding rules.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hotel.h"
#include "engine/text.h"

#define N_HOTELS   2000
#define SEED       1
#define HEADER     22
#define FOLD_CAP   1024 /* as suggest.c's FOLD_MAX */
#define MAX_CITIES 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_engine_query: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- the dataset and what the oracle precomputes -------------------------
 */

typedef struct doc {
	const hotel *h;
	char       **tokens; /* sorted, distinct */
	size_t       n_tokens;
	int          city;   /* index into cities[] */
	char        *folded; /* the name, folded; "" if no words */
	/* Stands for every hotel whose name folds the same: the one with
	 * the most reviews, then the lowest id. */
	bool rep;
} doc;

typedef struct city {
	const char *name, *country;
	uint64_t    reviews;
	char       *folded;
} city;

static hotel_dataset *ds;
static doc           *docs;
static size_t         n_docs;
static city           cities[MAX_CITIES];
static size_t         n_cities;

static int
strp_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *) a, *(char *const *) b));
}

static void
add_tokens(doc *d, const char *s, size_t *cap)
{
	hotel__tokenizer t;
	char             buf[HOTEL__TOKEN_MAX];
	size_t           len;

	hotel__tok_init(&t, s, strlen(s));
	while ((len = hotel__tok_next(&t, buf)) > 0) {
		if (d->n_tokens == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			d->tokens = realloc(d->tokens, *cap * sizeof(char *));
		}
		d->tokens[d->n_tokens] = strndup(buf, len);
		d->n_tokens++;
	}
}

static char *
fold(const char *s)
{
	char buf[FOLD_CAP];

	hotel__fold_words(s, buf, sizeof(buf), NULL);
	return (strdup(buf));
}

static int
rep_cmp(const void *a, const void *b)
{
	const doc *x = *(const doc *const *) a, *y = *(const doc *const *) b;
	int        c = strcmp(x->folded, y->folded);

	if (c != 0) {
		return (c);
	}
	if (x->h->review_count != y->h->review_count) {
		return (x->h->review_count > y->h->review_count ? -1 : 1);
	}
	return (x->h->id < y->h->id ? -1 : 1);
}

static void
build_oracle(void)
{
	n_docs = hotel_dataset_count(ds);
	docs = calloc(n_docs, sizeof(*docs));
	for (size_t i = 0; i < n_docs; i++) {
		doc   *d = &docs[i];
		size_t cap = 0, k = 0;

		d->h = hotel_dataset_at(ds, i);
		add_tokens(d, d->h->name, &cap);
		add_tokens(d, d->h->city, &cap);
		add_tokens(d, d->h->country, &cap);
		add_tokens(d, d->h->description, &cap);
		qsort(d->tokens, d->n_tokens, sizeof(char *), strp_cmp);
		for (size_t j = 0; j < d->n_tokens; j++) {
			if (k > 0
			    && strcmp(d->tokens[k - 1], d->tokens[j]) == 0) {
				free(d->tokens[j]);
				continue;
			}
			d->tokens[k++] = d->tokens[j];
		}
		d->n_tokens = k;
		d->folded = fold(d->h->name);

		size_t c;
		for (c = 0; c < n_cities; c++) {
			if (strcmp(cities[c].name, d->h->city) == 0
			    && strcmp(cities[c].country, d->h->country) == 0) {
				break;
			}
		}
		if (c == n_cities) {
			if (n_cities == MAX_CITIES) {
				die("more than %d cities", MAX_CITIES);
			}
			cities[c].name = d->h->city;
			cities[c].country = d->h->country;
			cities[c].folded = fold(d->h->city);
			n_cities++;
		}
		cities[c].reviews += d->h->review_count;
		d->city = (int) c;
	}

	doc **by = malloc((n_docs ? n_docs : 1) * sizeof(doc *));
	for (size_t i = 0; i < n_docs; i++) {
		by[i] = &docs[i];
	}
	qsort(by, n_docs, sizeof(doc *), rep_cmp);
	for (size_t i = 0; i < n_docs; i++) {
		by[i]->rep
		    = i == 0 || strcmp(by[i - 1]->folded, by[i]->folded) != 0;
	}
	free(by);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	if (hotel_dataset_generate(N_HOTELS, SEED, NULL, &ds) != HOTEL_OK) {
		die("hotel_dataset_generate failed");
	}
	build_oracle();
	return (0);
}

/* ---- the query from the input
 * ----------------------------------------------- */

typedef struct input {
	hotel_query q;
	bool        follow;     /* fetch the next page */
	bool        may_be_bad; /* EINVAL is an acceptable answer */
	bool        past_deadline;
	long        cancel_at; /* 0, or the stop check that cancels */
	long        checks;    /* the stop checks made so far */
	uint32_t    next_size; /* raw byte */
	size_t      limit;     /* of suggestions */
	char       *token;     /* NUL-terminated copy, or NULL */
	char       *text;      /* NUL-terminated copy */
} input;

static uint32_t
le(const uint8_t *p, int n)
{
	uint32_t v = 0;
	for (int i = n - 1; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return (v);
}

static double
special(unsigned v)
{
	static const double table[16] = { NAN, INFINITY, -INFINITY, -0.0, 0.0,
		1e308, -1e308, 90.0, -90.0, 180.0, -180.0, 90.000001,
		-180.000001, 5e-324, 20037.5, 1e-9 };
	return (table[v & 15]);
}

/* The cancel function: counts the checks, cancels from cancel_at on. */
static bool
cancelled_at(void *arg)
{
	input *in = arg;

	return (++in->checks >= in->cancel_at);
}

static bool
parse(const uint8_t *data, size_t size, input *in)
{
	uint8_t flags;
	size_t  tlen;

	if (size < HEADER) {
		return (false);
	}
	memset(in, 0, sizeof(*in));
	flags = data[0];
	tlen = data[21];
	if (HEADER + tlen > size) {
		return (false);
	}
	hotel_query *q = &in->q;
	bool         raw = (flags & 0x10) != 0;

	q->has_geo = (flags & 0x01) != 0;
	q->facets = (flags & 0x02) != 0;
	in->follow = (flags & 0x08) != 0;
	in->past_deadline = (flags & 0x20) != 0;
	in->may_be_bad = raw || (flags & 0x04) != 0;
	if (raw) {
		q->sort = (hotel_sort) data[1];
		q->page_size = data[2];
		q->min_stars = data[3] - 2;
		q->max_price_cents = (int32_t) le(data + 4, 4);
		q->amenities_all = le(data + 8, 4);
		q->top_cities = le(data + 12, 2);
	} else {
		q->sort = (hotel_sort) (data[1] % HOTEL_SORT_COUNT);
		q->page_size = 1 + data[2] % HOTEL_PAGE_SIZE_MAX;
		q->min_stars = data[3] % 6;
		q->max_price_cents = le(data + 4, 4) % 100000000;
		q->amenities_all = le(data + 8, 4) & HOTEL_AMENITY_ALL;
		q->top_cities = le(data + 12, 2) % (HOTEL_TOP_CITIES_MAX + 1);
		if (q->sort == HOTEL_SORT_DISTANCE && !q->has_geo) {
			q->sort = HOTEL_SORT_PRICE;
		}
	}
	if ((flags & 0x04) != 0) {
		q->lat = special(data[14]);
		q->lon = special(data[16]);
		q->radius_km = special(data[18]);
	} else {
		q->lat = (int16_t) le(data + 14, 2) * 90.0 / 32767;
		q->lon = (int16_t) le(data + 16, 2) * 180.0 / 32767;
		q->radius_km = le(data + 18, 2) / 10.0;
		if (q->radius_km == 0 && !raw) {
			q->radius_km = 0.1;
		}
		q->lat = q->lat > 90 ? 90 : q->lat < -90 ? -90 : q->lat;
		q->lon = q->lon > 180 ? 180 : q->lon < -180 ? -180 : q->lon;
	}
	in->next_size = data[20];
	in->limit = raw ? data[20] : 1 + data[20] % HOTEL_SUGGEST_MAX;
	if ((flags & 0x40) != 0) {
		in->token = strndup((const char *) data + HEADER, tlen);
		in->may_be_bad = true;
	}
	in->text = strndup(
	    (const char *) data + HEADER + tlen, size - HEADER - tlen);
	q->text = in->text;
	q->page_token = in->token;
	q->stop.deadline_ns = in->past_deadline ? hotel_now_ns() - 1 : 0;
	if ((flags & 0x80) != 0) {
		in->cancel_at = 1 + data[20] % 4;
		q->stop.cancelled = cancelled_at;
		q->stop.cancel_arg = in;
	}
	return (true);
}

/* ---- the oracle
 * --------------------------------------------------------------- */

typedef struct words {
	char   w[HOTEL_MAX_WORDS + 1][HOTEL__TOKEN_MAX + 1];
	size_t n; /* HOTEL_MAX_WORDS + 1 means "too many" */
} words;

static void
split(const char *text, words *ws)
{
	hotel__tokenizer t;
	char             buf[HOTEL__TOKEN_MAX];
	size_t           len;

	ws->n = 0;
	if (text == NULL) {
		return;
	}
	hotel__tok_init(&t, text, strlen(text));
	while ((len = hotel__tok_next(&t, buf)) > 0) {
		if (ws->n == HOTEL_MAX_WORDS + 1) {
			return;
		}
		memcpy(ws->w[ws->n], buf, len);
		ws->w[ws->n][len] = '\0';
		ws->n++;
	}
}

static bool
has_token(const doc *d, const char *w, bool prefix)
{
	size_t lo = 0, hi = d->n_tokens, len = strlen(w);

	while (lo < hi) { /* first token >= w */
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(d->tokens[mid], w) < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	if (lo == d->n_tokens) {
		return (false);
	}
	return (prefix ? strncmp(d->tokens[lo], w, len) == 0
	               : strcmp(d->tokens[lo], w) == 0);
}

/* True when doc matches the words and filters; *distp gets the distance. */
static bool
matches(const doc *d, const hotel_query *q, const words *ws, double *distp)
{
	const hotel *h = d->h;

	*distp = 0;
	if (h->stars < q->min_stars
	    || (q->max_price_cents > 0 && h->price_cents > q->max_price_cents)
	    || (h->amenities & q->amenities_all) != q->amenities_all) {
		return (false);
	}
	if (q->has_geo) {
		*distp = hotel_distance_km(
		    q->lat, q->lon, h->latitude, h->longitude);
		if (*distp > q->radius_km) {
			return (false);
		}
	}
	for (size_t i = 0; i < ws->n; i++) {
		if (!has_token(d, ws->w[i], i + 1 == ws->n)) {
			return (false);
		}
	}
	return (true);
}

/* The documented order, for two hits (score only for RELEVANCE). */
static int
hit_cmp(hotel_sort sort, const hotel_hit *a, const hotel_hit *b)
{
	const hotel *x = a->hotel, *y = b->hotel;

	switch (sort) {
	case HOTEL_SORT_RATING:
		if (x->rating != y->rating) {
			return (x->rating > y->rating ? -1 : 1);
		}
		if (x->review_count != y->review_count) {
			return (x->review_count > y->review_count ? -1 : 1);
		}
		break;
	case HOTEL_SORT_PRICE:
		if (x->price_cents != y->price_cents) {
			return (x->price_cents < y->price_cents ? -1 : 1);
		}
		break;
	case HOTEL_SORT_DISTANCE:
		if (a->distance_km != b->distance_km) {
			return (a->distance_km < b->distance_km ? -1 : 1);
		}
		break;
	default:
		if (a->score != b->score) {
			return (a->score > b->score ? -1 : 1);
		}
		break;
	}
	return (x->id < y->id ? -1 : x->id > y->id);
}

static hotel_sort sort_for_qsort;

static int
hit_qsort_cmp(const void *a, const void *b)
{
	return (hit_cmp(sort_for_qsort, a, b));
}

typedef struct expect {
	hotel_hit *hits; /* every match, sorted unless RELEVANCE w/ words */
	size_t     n;
	uint64_t   stars[6];
	uint64_t  *city_counts; /* per cities[] */
} expect;

static void
expect_build(const hotel_query *q, const words *ws, expect *e)
{
	e->hits = malloc((n_docs ? n_docs : 1) * sizeof(hotel_hit));
	e->city_counts = calloc(n_cities ? n_cities : 1, sizeof(uint64_t));
	e->n = 0;
	memset(e->stars, 0, sizeof(e->stars));
	for (size_t i = 0; i < n_docs; i++) {
		double dist;
		if (!matches(&docs[i], q, ws, &dist)) {
			continue;
		}
		e->hits[e->n].hotel = docs[i].h;
		e->hits[e->n].score = 0;
		e->hits[e->n].distance_km = dist;
		e->n++;
		e->stars[docs[i].h->stars]++;
		e->city_counts[docs[i].city]++;
	}
	if (q->sort != HOTEL_SORT_RELEVANCE || ws->n == 0) {
		sort_for_qsort = q->sort;
		qsort(e->hits, e->n, sizeof(hotel_hit), hit_qsort_cmp);
	}
}

static void
expect_free(expect *e)
{
	free(e->hits);
	free(e->city_counts);
}

static const doc *
doc_of(const hotel *h)
{
	const hotel *g;

	if (hotel_get(ds, h->id, &g) != HOTEL_OK || g != h) {
		die("hit id %llu is not the dataset's hotel",
		    (unsigned long long) h->id);
	}
	/* docs[] is in id order, as hotel_dataset_at() is. */
	size_t lo = 0, hi = n_docs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (docs[mid].h->id < h->id) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return (&docs[lo]);
}

/* Checks one page that starts at offset in the full order. */
static void
check_page(const hotel_query *q, const words *ws, const expect *e,
    const hotel_result *r, size_t offset)
{
	bool exact = q->sort != HOTEL_SORT_RELEVANCE || ws->n == 0;

	if (r->n_hits > q->page_size) {
		die("%zu hits for page_size %u", r->n_hits, q->page_size);
	}
	if (r->total != e->n) {
		die("total %llu, brute force finds %zu (text \"%s\")",
		    (unsigned long long) r->total, e->n,
		    q->text ? q->text : "");
	}
	if (r->total < r->n_hits) {
		die("total %llu < n_hits %zu", (unsigned long long) r->total,
		    r->n_hits);
	}
	size_t want = offset < e->n ? e->n - offset : 0;
	want = want > q->page_size ? q->page_size : want;
	if (r->n_hits != want) {
		die("%zu hits at offset %zu of %zu, want %zu", r->n_hits,
		    offset, e->n, want);
	}
	bool last = offset + r->n_hits >= e->n;
	if (last != (r->next_page_token[0] == '\0')) {
		die("next_page_token \"%s\" at offset %zu + %zu of %zu",
		    r->next_page_token, offset, r->n_hits, e->n);
	}
	if (r->n_hits > 0 && r->hits == NULL) {
		die("hits is NULL");
	}
	for (size_t i = 0; i < r->n_hits; i++) {
		const hotel_hit *hit = &r->hits[i];
		const doc       *d = doc_of(hit->hotel);
		double           dist;

		if (!matches(d, q, ws, &dist)) {
			die("hit %llu does not match the query",
			    (unsigned long long) hit->hotel->id);
		}
		if (q->has_geo ? hit->distance_km != dist
		               : hit->distance_km != 0) {
			die("hit %llu: distance_km %.17g, want %.17g",
			    (unsigned long long) hit->hotel->id,
			    hit->distance_km, q->has_geo ? dist : 0.0);
		}
		if (ws->n == 0 ? hit->score != 0
		               : !(hit->score > 0 && isfinite(hit->score))) {
			die("hit %llu: score %g",
			    (unsigned long long) hit->hotel->id, hit->score);
		}
		if (i > 0 && hit_cmp(q->sort, &r->hits[i - 1], hit) >= 0) {
			die("hits %zu and %zu out of order (sort %d): ids "
			    "%llu, "
			    "%llu",
			    i - 1, i, (int) q->sort,
			    (unsigned long long) r->hits[i - 1].hotel->id,
			    (unsigned long long) hit->hotel->id);
		}
		if (exact && e->hits[offset + i].hotel != hit->hotel) {
			die("hit %zu is id %llu, brute force says id %llu "
			    "(sort %d)",
			    offset + i, (unsigned long long) hit->hotel->id,
			    (unsigned long long) e->hits[offset + i].hotel->id,
			    (int) q->sort);
		}
	}
	if (q->facets) {
		uint64_t sum = 0, prev = UINT64_MAX;
		size_t   top
		    = q->top_cities ? q->top_cities : HOTEL_TOP_CITIES_DEF;
		size_t nonzero = 0;

		if (!r->has_facets) {
			die("facets asked, has_facets false");
		}
		for (int s = 0; s < 6; s++) {
			if (r->stars_facet[s] != e->stars[s]) {
				die("stars_facet[%d] %llu, brute force %llu",
				    s, (unsigned long long) r->stars_facet[s],
				    (unsigned long long) e->stars[s]);
			}
		}
		for (size_t c = 0; c < n_cities; c++) {
			nonzero += e->city_counts[c] > 0;
		}
		if (r->n_cities != (nonzero < top ? nonzero : top)) {
			die("%zu cities in the facet, want min(%zu, %zu)",
			    r->n_cities, nonzero, top);
		}
		for (size_t i = 0; i < r->n_cities; i++) {
			const hotel_city_count *cc = &r->cities[i];
			size_t                  c;
			for (c = 0; c < n_cities; c++) {
				if (strcmp(cities[c].name, cc->city) == 0
				    && strcmp(cities[c].country, cc->country)
				        == 0) {
					break;
				}
			}
			if (c == n_cities || e->city_counts[c] != cc->count) {
				die("city facet %s, %s: %llu", cc->city,
				    cc->country,
				    (unsigned long long) cc->count);
			}
			if (cc->count > prev) {
				die("city facet not by count desc");
			}
			if (i > 0 && cc->count == prev) {
				const hotel_city_count *pc = &r->cities[i - 1];
				int k = strcmp(pc->city, cc->city);
				if (k > 0
				    || (k == 0
				        && strcmp(pc->country, cc->country)
				            >= 0)) {
					die("city facet ties not by city, "
					    "country");
				}
			}
			prev = cc->count;
			sum += cc->count;
		}
		/* Nothing left out outranks the last one kept. */
		if (r->n_cities > 0) {
			const hotel_city_count *lc
			    = &r->cities[r->n_cities - 1];
			size_t above = 0;
			for (size_t c = 0; c < n_cities; c++) {
				above += e->city_counts[c] > lc->count;
			}
			if (above >= r->n_cities) {
				die("city facet misses a bigger city");
			}
		}
		if (sum > r->total) {
			die("city facet counts exceed the total");
		}
	} else if (r->has_facets) {
		die("has_facets without facets asked");
	}
}

/* Expected code of an hotel_search() that is not OK. */
static void
check_error(const input *in, const words *ws, int rv, const char *err,
    const char *what)
{
	if (rv == HOTEL_EDEADLINE && in->past_deadline) {
		return;
	}
	if (rv == HOTEL_ECANCELED && in->cancel_at > 0) {
		if (in->checks != in->cancel_at
		    || strcmp(err, "cancelled") != 0) {
			die("%s: cancelled at check %ld of %ld (\"%s\")", what,
			    in->checks, in->cancel_at, err);
		}
		return;
	}
	if (rv == HOTEL_EINVAL
	    && (in->may_be_bad || ws->n > HOTEL_MAX_WORDS)) {
		if (err[0] == '\0') {
			die("%s: HOTEL_EINVAL with no message", what);
		}
		return;
	}
	die("%s: unexpected %d (%s): %s", what, rv, hotel_strerror(rv), err);
}

/* ---- suggestions
 * -------------------------------------------------------------- */

typedef struct sug {
	int         kind;
	uint64_t    weight;
	const char *folded;
	const doc  *d; /* HOTEL */
	size_t      c; /* CITY */
} sug;

static int
sug_cmp(const void *a, const void *b)
{
	const sug *x = a, *y = b;
	int        c;

	if (x->weight != y->weight) {
		return (x->weight > y->weight ? -1 : 1);
	}
	if (x->kind != y->kind) {
		return (x->kind < y->kind ? -1 : 1); /* cities first */
	}
	if ((c = strcmp(x->folded, y->folded)) != 0) {
		return (c);
	}
	if (x->kind == HOTEL_SUGGEST_HOTEL) {
		return (x->d->h->id < y->d->h->id ? -1 : 1);
	}
	return (0);
}

/* True when the folded prefix p (len bytes) starts a word of text; with
 * trailing, the word must end there too. */
static bool
prefix_at_word(const char *text, const char *p, size_t len, bool trailing)
{
	for (size_t k = 0; text[k] != '\0'; k++) {
		if ((k == 0 || text[k - 1] == ' ')
		    && strncmp(text + k, p, len) == 0
		    && (!trailing || text[k + len] == ' '
		        || text[k + len] == '\0')) {
			return (true);
		}
	}
	return (false);
}

static void
check_suggest(const char *prefix, size_t limit)
{
	hotel_suggestion *s = NULL;
	size_t            n = 0, n_exp = 0;
	char              err[256] = "";
	char              p[FOLD_CAP];
	bool              trailing = false;
	size_t            plen;
	sug              *exp;
	int               rv;

	rv = hotel_suggest(ds, prefix, limit, NULL, &s, &n, err, sizeof(err));
	if (limit < 1 || limit > HOTEL_SUGGEST_MAX) {
		if (rv != HOTEL_EINVAL || err[0] == '\0') {
			die("suggest: limit %zu: %d", limit, rv);
		}
		return;
	}
	if (rv != HOTEL_OK) {
		die("suggest: unexpected %d: %s", rv, err);
	}
	if (n > limit || (n == 0) != (s == NULL)) {
		die("suggest: %zu suggestions (limit %zu), s %p", n, limit,
		    (void *) s);
	}

	plen = hotel__fold_words(prefix, p, sizeof(p) - 1, &trailing);
	exp = malloc((n_docs + n_cities + 1) * sizeof(*exp));
	if (plen > 0) {
		for (size_t c = 0; c < n_cities; c++) {
			if (cities[c].folded[0] != '\0'
			    && prefix_at_word(
			        cities[c].folded, p, plen, trailing)) {
				exp[n_exp++] = (sug) { HOTEL_SUGGEST_CITY,
					cities[c].reviews, cities[c].folded,
					NULL, c };
			}
		}
		for (size_t i = 0; i < n_docs; i++) {
			const doc *d = &docs[i];
			if (d->folded[0] == '\0' || !d->rep
			    || !prefix_at_word(d->folded, p, plen, trailing)) {
				continue;
			}
			{
				exp[n_exp++] = (sug) { HOTEL_SUGGEST_HOTEL,
					d->h->review_count, d->folded, d, 0 };
			}
		}
	}
	qsort(exp, n_exp, sizeof(*exp), sug_cmp);
	if (n != (n_exp < limit ? n_exp : limit)) {
		die("suggest \"%s\" (folded \"%s\"%s): %zu suggestions, brute "
		    "force %zu (limit %zu)",
		    prefix, p, trailing ? ", trailing separator" : "", n,
		    n_exp, limit);
	}
	for (size_t i = 0; i < n; i++) {
		const hotel_suggestion *g = &s[i];
		const sug              *x = &exp[i];
		if ((int) g->kind != x->kind || g->weight != x->weight) {
			die("suggest \"%s\" [%zu]: kind %d weight %llu, brute "
			    "force kind %d weight %llu (%s)",
			    prefix, i, (int) g->kind,
			    (unsigned long long) g->weight, x->kind,
			    (unsigned long long) x->weight, x->folded);
		}
		if (x->kind == HOTEL_SUGGEST_HOTEL
		    && (g->hotel_id != x->d->h->id
		        || strcmp(g->text, x->d->h->name) != 0
		        || strcmp(g->city, x->d->h->city) != 0
		        || strcmp(g->country, x->d->h->country) != 0)) {
			die("suggest \"%s\" [%zu]: hotel %llu \"%s\", brute "
			    "force %llu \"%s\"",
			    prefix, i, (unsigned long long) g->hotel_id,
			    g->text, (unsigned long long) x->d->h->id,
			    x->d->h->name);
		}
		if (x->kind == HOTEL_SUGGEST_CITY) {
			char *f = fold(g->text);
			if (g->hotel_id != 0 || strcmp(g->text, g->city) != 0
			    || strcmp(f, x->folded) != 0) {
				die("suggest \"%s\" [%zu]: city \"%s\", brute "
				    "force \"%s\"",
				    prefix, i, g->text, x->folded);
			}
			free(f);
		}
	}
	free(exp);
	hotel_suggestions_free(s);
}

/* ---- one input -------------------------------------------------------------
 */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	input         in;
	words         ws;
	expect        e;
	hotel_result *r = NULL, *r2 = NULL, *r3 = NULL;
	char          err[256] = "";
	int           rv;

	if (!parse(data, size, &in)) {
		return (0);
	}
	split(in.text, &ws);

	rv = hotel_search(ds, &in.q, &r, err, sizeof(err));
	if (rv != HOTEL_OK) {
		check_error(&in, &ws, rv, err, "search");
		goto suggest;
	}
	if (in.past_deadline) {
		die("search succeeded past its deadline");
	}
	if (in.cancel_at > 0 && in.checks >= in.cancel_at) {
		die("search succeeded after it was cancelled");
	}
	in.q.stop.cancelled = NULL; /* the queries below run to the end */
	if (ws.n > HOTEL_MAX_WORDS) {
		die("search accepted more than %d words", HOTEL_MAX_WORDS);
	}
	expect_build(&in.q, &ws, &e);
	if (in.token == NULL || in.token[0] == '\0') {
		check_page(&in.q, &ws, &e, r, 0);

		/* Deterministic. */
		if (hotel_search(ds, &in.q, &r2, err, sizeof(err)) != HOTEL_OK
		    || r2->n_hits != r->n_hits || r2->total != r->total
		    || strcmp(r2->next_page_token, r->next_page_token) != 0) {
			die("the same query twice gives different results");
		}
		for (size_t i = 0; i < r->n_hits; i++) {
			if (r2->hits[i].hotel != r->hits[i].hotel
			    || r2->hits[i].score != r->hits[i].score) {
				die("the same query twice: hit %zu differs",
				    i);
			}
		}

		/* The next page, with another page_size and facets. */
		if (in.follow && r->next_page_token[0] != '\0') {
			hotel_query q2 = in.q;
			q2.page_token = r->next_page_token;
			q2.page_size = 1 + in.next_size % HOTEL_PAGE_SIZE_MAX;
			q2.facets = !q2.facets;
			q2.top_cities = 0;
			rv = hotel_search(ds, &q2, &r3, err, sizeof(err));
			if (rv != HOTEL_OK) {
				die("the next page token fails: %d: %s", rv,
				    err);
			}
			check_page(&q2, &ws, &e, r3, r->n_hits);
			if (r->n_hits > 0 && r3->n_hits > 0
			    && hit_cmp(in.q.sort, &r->hits[r->n_hits - 1],
			           &r3->hits[0])
			        >= 0) {
				die("page 2 does not continue page 1's order");
			}
		}
	} else {
		/* A fuzzed token that parsed: any page of this query. */
		if (r->n_hits > in.q.page_size || r->total != e.n) {
			die("with a token: %zu hits, total %llu (want %zu)",
			    r->n_hits, (unsigned long long) r->total, e.n);
		}
	}
	expect_free(&e);

suggest:
	check_suggest(in.text, in.limit);
	hotel_result_free(r);
	hotel_result_free(r2);
	hotel_result_free(r3);
	free(in.text);
	free(in.token);
	return (0);
}
