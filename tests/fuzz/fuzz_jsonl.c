/*
 * fuzz_jsonl: the input is a JSON Lines file for hotel_dataset_read_jsonl()
 * (read through fmemopen). When it loads:
 *  - every hotel obeys the documented ranges;
 *  - written back with hotel_dataset_write_jsonl() and loaded again, it
 *    gives the same dataset id and count, and writing that one gives the
 *    same bytes (the round trip is exact);
 *  - a search for each of the first hotels' names finds that hotel with a
 *    finite positive score, a search with no words sorted by rating (and
 *    by price) is in the documented order, and a suggestion for the name
 *    returns nothing but valid suggestions: so every odd dataset the
 *    loader accepts is also indexed and queried.
 * When it does not load: HOTEL_EPARSE, HOTEL_EINVAL or HOTEL_ENOMEM, with
 * a message.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hotel.h"

#define MAX_INPUT    (256 * 1024) /* larger inputs only slow the fuzzer */
#define NAME_QUERIES 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_jsonl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static hotel_dataset *
load(const void *buf, size_t len, const char *what)
{
	static const char empty[1];
	hotel_dataset    *ds = NULL;
	char              err[512];
	FILE             *f;
	int               rv;

	memset(err, 0, sizeof(err));
	/* fmemopen() of 0 bytes fails on older glibc: read an empty string
	 * instead, which has no bytes either. */
	f = len > 0 ? fmemopen((void *) buf, len, "r")
	            : fmemopen((void *) empty, 1, "r");
	if (f == NULL) {
		die("fmemopen failed");
	}
	if (len == 0) {
		fgetc(f); /* past the NUL */
	}
	rv = hotel_dataset_read_jsonl(f, "fuzz", NULL, &ds, err, sizeof(err));
	fclose(f);
	if (memchr(err, '\0', sizeof(err)) == NULL) {
		die("%s: err is not NUL-terminated", what);
	}
	if (rv == HOTEL_OK) {
		if (ds == NULL) {
			die("%s: HOTEL_OK and no dataset", what);
		}
		return (ds);
	}
	if (rv != HOTEL_EPARSE && rv != HOTEL_EINVAL && rv != HOTEL_ENOMEM) {
		die("%s: unexpected %d (%s): %s", what, rv, hotel_strerror(rv),
		    err);
	}
	if (rv == HOTEL_EPARSE && err[0] == '\0') {
		die("%s: HOTEL_EPARSE with no message", what);
	}
	return (NULL);
}

static char *
dump(const hotel_dataset *ds, size_t *lenp)
{
	char  *buf = NULL;
	size_t len = 0;
	FILE  *f = open_memstream(&buf, &len);

	if (f == NULL || hotel_dataset_write_jsonl(ds, f) != HOTEL_OK
	    || fclose(f) != 0) {
		die("hotel_dataset_write_jsonl failed");
	}
	*lenp = len;
	return (buf);
}

static void
check_hotels(const hotel_dataset *ds)
{
	size_t n = hotel_dataset_count(ds);

	for (size_t i = 0; i < n; i++) {
		const hotel *h = hotel_dataset_at(ds, i);
		const hotel *g;

		if (h == NULL || h->id == 0 || h->name[0] == '\0'
		    || h->city[0] == '\0' || h->country[0] == '\0'
		    || h->description == NULL || !(h->latitude >= -90)
		    || !(h->latitude <= 90) || !(h->longitude >= -180)
		    || !(h->longitude <= 180) || h->stars < 1 || h->stars > 5
		    || h->price_cents < 0 || !(h->rating >= 0)
		    || !(h->rating <= 10)
		    || (h->amenities & ~(uint32_t) HOTEL_AMENITY_ALL) != 0) {
			die("hotel %zu out of the documented ranges", i);
		}
		if (i > 0 && hotel_dataset_at(ds, i - 1)->id >= h->id) {
			die("hotels not in strictly increasing id order");
		}
		if (hotel_get(ds, h->id, &g) != HOTEL_OK || g != h) {
			die("hotel_get(%llu) does not find it",
			    (unsigned long long) h->id);
		}
	}
	if (hotel_dataset_at(ds, n) != NULL) {
		die("hotel_dataset_at(count) is not NULL");
	}
}

/* The documented order of the whole dataset for sort (no words: score 0). */
static bool
before(hotel_sort sort, const hotel *x, const hotel *y)
{
	if (sort == HOTEL_SORT_RATING) {
		if (x->rating != y->rating) {
			return (x->rating > y->rating);
		}
		if (x->review_count != y->review_count) {
			return (x->review_count > y->review_count);
		}
	} else if (sort == HOTEL_SORT_PRICE
	    && x->price_cents != y->price_cents) {
		return (x->price_cents < y->price_cents);
	}
	return (x->id < y->id);
}

static void
check_queries(const hotel_dataset *ds)
{
	static const hotel_sort sorts[]
	    = { HOTEL_SORT_RATING, HOTEL_SORT_PRICE, HOTEL_SORT_RELEVANCE };
	size_t n = hotel_dataset_count(ds);
	char   err[256];

	for (size_t k = 0; k < sizeof(sorts) / sizeof(sorts[0]); k++) {
		hotel_query   q = { .sort = sorts[k], .page_size = 100 };
		hotel_result *r;

		if (hotel_search(ds, &q, &r, err, sizeof(err)) != HOTEL_OK) {
			die("search with no words fails: %s", err);
		}
		if (r->total != n || r->n_hits != (n < 100 ? n : 100)) {
			die("search with no words: total %llu of %zu",
			    (unsigned long long) r->total, n);
		}
		for (size_t i = 1; i < r->n_hits; i++) {
			if (!before(q.sort, r->hits[i - 1].hotel,
			        r->hits[i].hotel)) {
				die("sort %d: hit %zu (id %llu, rating %g) "
				    "before hit %zu (id %llu, rating %g)",
				    (int) q.sort, i - 1,
				    (unsigned long long) r->hits[i - 1]
				        .hotel->id,
				    r->hits[i - 1].hotel->rating, i,
				    (unsigned long long) r->hits[i].hotel->id,
				    r->hits[i].hotel->rating);
			}
		}
		hotel_result_free(r);
	}

	for (size_t i = 0; i < n && i < NAME_QUERIES; i++) {
		const hotel      *h = hotel_dataset_at(ds, i);
		hotel_query       q = { .text = h->name, .page_size = 100 };
		hotel_result     *r;
		hotel_suggestion *s;
		size_t            ns;
		bool              found = false;
		int               rv;

		rv = hotel_search(ds, &q, &r, err, sizeof(err));
		if (rv == HOTEL_EINVAL) {
			continue; /* more than HOTEL_MAX_WORDS words */
		}
		if (rv != HOTEL_OK) {
			die("search for a name fails: %d: %s", rv, err);
		}
		for (size_t j = 0; j < r->n_hits; j++) {
			if (!(r->hits[j].score >= 0)
			    || !isfinite(r->hits[j].score)) {
				die("score %g", r->hits[j].score);
			}
			found |= r->hits[j].hotel == h;
		}
		if (!found && r->total <= r->n_hits) {
			die("searching the name of hotel %llu does not find "
			    "it",
			    (unsigned long long) h->id);
		}
		hotel_result_free(r);

		rv = hotel_suggest(
		    ds, h->name, 10, NULL, &s, &ns, err, sizeof(err));
		if (rv != HOTEL_OK || ns > 10) {
			die("suggest for a name: %d: %s", rv, err);
		}
		for (size_t j = 0; j < ns; j++) {
			const hotel *g;
			if (s[j].kind == HOTEL_SUGGEST_HOTEL
			    && (hotel_get(ds, s[j].hotel_id, &g) != HOTEL_OK
			        || strcmp(g->name, s[j].text) != 0)) {
				die("suggestion %zu is not a hotel", j);
			}
			if (s[j].kind == HOTEL_SUGGEST_CITY
			    && s[j].hotel_id != 0) {
				die("city suggestion with a hotel id");
			}
		}
		hotel_suggestions_free(s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hotel_dataset *ds, *ds2;
	hotel_stats    st, st2;
	char          *out, *out2;
	size_t         len, len2;

	if (size > MAX_INPUT) {
		return (0);
	}
	if ((ds = load(data, size, "input")) == NULL) {
		return (0);
	}
	check_hotels(ds);
	out = dump(ds, &len);
	if ((ds2 = load(out, len, "written back")) == NULL) {
		die("the written dataset does not load again:\n%.*s",
		    (int) (len > 2000 ? 2000 : len), out);
	}
	hotel_dataset_stats(ds, &st);
	hotel_dataset_stats(ds2, &st2);
	if (strcmp(st.dataset_id, st2.dataset_id) != 0
	    || st.hotel_count != st2.hotel_count
	    || hotel_dataset_count(ds) != hotel_dataset_count(ds2)) {
		die("round trip: dataset %s (%llu hotels) became %s (%llu)",
		    st.dataset_id, (unsigned long long) st.hotel_count,
		    st2.dataset_id, (unsigned long long) st2.hotel_count);
	}
	out2 = dump(ds2, &len2);
	if (len != len2 || memcmp(out, out2, len) != 0) {
		die("round trip: writing the reloaded dataset gives other "
		    "bytes");
	}
	check_queries(ds);
	free(out);
	free(out2);
	hotel_dataset_release(ds2);
	hotel_dataset_release(ds);
	return (0);
}
