/*
 * Datasets: building, reference counting, lookups by id, stats.
 *
 * DESIGN
 * ------
 * A dataset is built by one thread: hotel__dataset_new(), then
 * hotel__dataset_add() for each hotel (the generator and the loaders call
 * it), then hotel__dataset_finish(), which sorts the hotels by id (so a
 * document number is also the id order, and ties "by id" are ties by doc),
 * builds the filter columns, the city table, the latitude order, the index
 * and the suggestion tables, and hashes the content into the dataset id.
 * From then on nothing in it changes and any number of threads read it
 * without locks; the only shared mutable field is the atomic reference
 * count. The last hotel_dataset_release() frees it.
 *
 * All memory the finished dataset holds is allocated through its hotel__mem
 * counter (mem.h), which is what Stats reports. Build-time scratch (the
 * city interning map) uses scratch_mem and is gone before publication.
 *
 * The one place a build uses a second thread: while the index builds, a
 * second thread sorts the latitude, rating and price orders, builds the
 * suggestion tables and hashes the content (they all read the finished
 * hotels and columns and write disjoint fields; that side counts into its
 * own hotel__mem, added after the join).
 *
 * A build may be stopped (hotel_stop: deadline, cancel). Both build threads
 * tick through their loops (stop.h) and share one result, so a stop seen
 * by either ends both; the builder then destroys the half-built dataset,
 * which frees whatever either thread had allocated.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "stop.h"

int
hotel__dataset_new(hotel_dataset **dsp, const char *fmt, ...)
{
	hotel_dataset *ds;
	char           buf[512];
	va_list        ap;

	if ((ds = calloc(1, sizeof(*ds))) == NULL) {
		return (HOTEL_ENOMEM);
	}
	ds->started_ns = hotel_now_ns();
	ds->mem.bytes = sizeof(*ds);
	atomic_init(&ds->refs, 1);
	hotel__arena_init(&ds->strings, &ds->mem);
	hotel__strmap_init(&ds->city_map, &ds->scratch_mem);
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if ((ds->source = hotel__arena_strndup(&ds->strings, buf, strlen(buf)))
	    == NULL) {
		hotel__dataset_destroy(ds);
		return (HOTEL_ENOMEM);
	}
	*dsp = ds;
	return (HOTEL_OK);
}

void
hotel__dataset_destroy(hotel_dataset *ds)
{
	if (ds == NULL) {
		return;
	}
	hotel__strmap_fini(&ds->city_map);
	hotel__index_fini(&ds->index, &ds->mem);
	hotel__suggest_fini(&ds->suggest, &ds->mem);
	hotel__free(&ds->mem, ds->hotels, ds->cap * sizeof(hotel));
	hotel__free(&ds->mem, ds->city_of, ds->cap_city_of * sizeof(uint32_t));
	hotel__free(&ds->mem, ds->stars, ds->n * sizeof(uint8_t));
	hotel__free(&ds->mem, ds->amenities, ds->n * sizeof(uint32_t));
	hotel__free(&ds->mem, ds->price, ds->n * sizeof(int64_t));
	hotel__free(&ds->mem, ds->lat_order, ds->n * sizeof(uint32_t));
	hotel__free(&ds->mem, ds->rating_order, ds->n * sizeof(uint32_t));
	hotel__free(&ds->mem, ds->price_order, ds->n * sizeof(uint32_t));
	hotel__free(&ds->mem, ds->lat_sorted, ds->n * sizeof(double));
	hotel__free(&ds->mem, ds->lon_by_lat, ds->n * sizeof(double));
	hotel__free(
	    &ds->mem, ds->cities, ds->cap_cities * sizeof(hotel__city));
	hotel__arena_fini(&ds->strings);
	/* Every counted byte was given back: the counter is exact. */
	assert(ds->mem.bytes == sizeof(*ds));
	free(ds);
}

int
hotel__hotel_check(const hotel *h, char *err, size_t errlen)
{
	if (h->id == 0) {
		return (hotel__err(
		    HOTEL_EINVAL, err, errlen, "id: must be greater than 0"));
	}
	if (h->name == NULL || h->name[0] == '\0') {
		return (hotel__err(HOTEL_EINVAL, err, errlen, "name: empty"));
	}
	if (h->city == NULL || h->city[0] == '\0') {
		return (hotel__err(HOTEL_EINVAL, err, errlen, "city: empty"));
	}
	if (h->country == NULL || h->country[0] == '\0') {
		return (
		    hotel__err(HOTEL_EINVAL, err, errlen, "country: empty"));
	}
	if (!(h->latitude >= -90.0 && h->latitude <= 90.0)) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "latitude: must be -90..90, got %g", h->latitude));
	}
	if (!(h->longitude >= -180.0 && h->longitude <= 180.0)) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "longitude: must be -180..180, got %g", h->longitude));
	}
	if (h->stars < 1 || h->stars > 5) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "stars: must be 1..5, got %d", h->stars));
	}
	if (h->price_cents < 0) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "priceCents: must be >= 0, got %lld",
		    (long long) h->price_cents));
	}
	if (!(h->rating >= 0.0 && h->rating <= 10.0)) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "rating: must be 0..10, got %g", h->rating));
	}
	if ((h->amenities & ~(uint32_t) HOTEL_AMENITY_ALL) != 0) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "amenities: unknown bits 0x%x",
		    (unsigned) (h->amenities
		        & ~(uint32_t) HOTEL_AMENITY_ALL)));
	}
	return (HOTEL_OK);
}

static int
intern_city(
    hotel_dataset *ds, const char *city, const char *country, uint32_t *idp)
{
	size_t   lc = strlen(city), ln = strlen(country);
	char     stackbuf[256];
	char    *key = stackbuf;
	uint32_t id;
	bool     created;
	int      rv = HOTEL_OK;

	if (lc + ln + 1 > sizeof(stackbuf)
	    && (key = malloc(lc + ln + 1)) == NULL) {
		return (HOTEL_ENOMEM);
	}
	memcpy(key, city, lc);
	key[lc] = '\0';
	memcpy(key + lc + 1, country, ln);
	if (hotel__strmap_get(&ds->city_map, key, lc + ln + 1, true,
	        (uint32_t) ds->n_cities, &id, &created)
	    != 0) {
		rv = HOTEL_ENOMEM;
		goto out;
	}
	if (created) {
		hotel__city *c;
		if (hotel__grow(&ds->mem, (void **) &ds->cities,
		        &ds->cap_cities, ds->n_cities + 1, sizeof(hotel__city))
		    != 0) {
			rv = HOTEL_ENOMEM;
			goto out;
		}
		c = &ds->cities[ds->n_cities];
		c->name = hotel__arena_strndup(&ds->strings, city, lc);
		c->country = hotel__arena_strndup(&ds->strings, country, ln);
		c->reviews = 0;
		c->hotels = 0;
		if (c->name == NULL || c->country == NULL) {
			rv = HOTEL_ENOMEM;
			goto out;
		}
		ds->n_cities++;
	}
	*idp = id;
out:
	if (key != stackbuf) {
		free(key);
	}
	return (rv);
}

int
hotel__dataset_add(hotel_dataset *ds, const hotel *h)
{
	hotel   *d;
	uint32_t city;
	int      rv;

	if (ds->n >= UINT32_MAX - 1) {
		return (HOTEL_ENOMEM);
	}
	if (hotel__grow(&ds->mem, (void **) &ds->hotels, &ds->cap, ds->n + 1,
	        sizeof(hotel))
	        != 0
	    || hotel__grow(&ds->mem, (void **) &ds->city_of, &ds->cap_city_of,
	           ds->n + 1, sizeof(uint32_t))
	        != 0) {
		return (HOTEL_ENOMEM);
	}
	if ((rv = intern_city(ds, h->city, h->country, &city)) != HOTEL_OK) {
		return (rv);
	}
	d = &ds->hotels[ds->n];
	*d = *h;
	/* -0.0 passes the range checks; store +0.0, so that sort keys on
	 * the bits, the dataset id and the writer's output see one zero. */
	d->latitude = h->latitude + 0.0;
	d->longitude = h->longitude + 0.0;
	d->rating = h->rating + 0.0;
	d->city = ds->cities[city].name;
	d->country = ds->cities[city].country;
	d->name = hotel__arena_strndup(&ds->strings, h->name, strlen(h->name));
	d->description = h->description == NULL
	    ? ""
	    : hotel__arena_strndup(
	        &ds->strings, h->description, strlen(h->description));
	if (d->name == NULL || d->description == NULL) {
		return (HOTEL_ENOMEM);
	}
	ds->city_of[ds->n] = city;
	ds->n++;
	return (HOTEL_OK);
}

struct id_idx {
	uint64_t id;
	uint32_t idx;
};

static int
id_idx_cmp(const void *a, const void *b)
{
	const struct id_idx *x = a, *y = b;
	if (x->id != y->id) {
		return (x->id < y->id ? -1 : 1);
	}
	return (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* Sorts hotels (and city_of) by id; duplicates are an error. */
static int
sort_by_id(hotel_dataset *ds, char *err, size_t errlen)
{
	struct id_idx *perm;
	hotel         *h2;
	uint32_t      *c2;
	size_t         n = ds->n, i;
	bool           sorted = true;

	for (i = 1; i < n; i++) {
		if (ds->hotels[i - 1].id >= ds->hotels[i].id) {
			sorted = false;
			break;
		}
	}
	if (sorted) {
		/* Shrink to fit. */
		h2 = hotel__realloc(&ds->mem, ds->hotels,
		    ds->cap * sizeof(hotel), n * sizeof(hotel));
		if (h2 == NULL) {
			return (HOTEL_ENOMEM);
		}
		ds->hotels = h2;
		ds->cap = n;
		c2 = hotel__realloc(&ds->mem, ds->city_of,
		    ds->cap_city_of * sizeof(uint32_t), n * sizeof(uint32_t));
		if (c2 == NULL) {
			return (HOTEL_ENOMEM);
		}
		ds->city_of = c2;
		ds->cap_city_of = n;
		return (HOTEL_OK);
	}
	if ((perm = malloc((n ? n : 1) * sizeof(*perm))) == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (i = 0; i < n; i++) {
		perm[i].id = ds->hotels[i].id;
		perm[i].idx = (uint32_t) i;
	}
	qsort(perm, n, sizeof(*perm), id_idx_cmp);
	for (i = 1; i < n; i++) {
		if (perm[i].id == perm[i - 1].id) {
			int rv = hotel__err(HOTEL_EINVAL, err, errlen,
			    "hotel[%u]: id: duplicate id %llu (also "
			    "hotel[%u])",
			    (unsigned) perm[i].idx,
			    (unsigned long long) perm[i].id,
			    (unsigned) perm[i - 1].idx);
			free(perm);
			return (rv);
		}
	}
	h2 = hotel__alloc(&ds->mem, n * sizeof(hotel));
	c2 = hotel__alloc(&ds->mem, n * sizeof(uint32_t));
	if (h2 == NULL || c2 == NULL) {
		hotel__free(&ds->mem, h2, n * sizeof(hotel));
		hotel__free(&ds->mem, c2, n * sizeof(uint32_t));
		free(perm);
		return (HOTEL_ENOMEM);
	}
	for (i = 0; i < n; i++) {
		h2[i] = ds->hotels[perm[i].idx];
		c2[i] = ds->city_of[perm[i].idx];
	}
	free(perm);
	hotel__free(&ds->mem, ds->hotels, ds->cap * sizeof(hotel));
	hotel__free(&ds->mem, ds->city_of, ds->cap_city_of * sizeof(uint32_t));
	ds->hotels = h2;
	ds->city_of = c2;
	ds->cap = n;
	ds->cap_city_of = n;
	return (HOTEL_OK);
}

struct lat_doc {
	double   lat;
	uint32_t doc;
};

static int
lat_doc_cmp(const void *a, const void *b)
{
	const struct lat_doc *x = a, *y = b;
	if (x->lat != y->lat) {
		return (x->lat < y->lat ? -1 : 1);
	}
	return (x->doc < y->doc ? -1 : x->doc > y->doc);
}

/* Sort keys for the precomputed orders: (k1, k2, doc) ascending, as
 * search.c orders hits. */
struct order_key {
	uint64_t k1;
	uint32_t k2;
	uint32_t doc;
};

static int
order_key_cmp(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;
	if (x->k1 != y->k1) {
		return (x->k1 < y->k1 ? -1 : 1);
	}
	if (x->k2 != y->k2) {
		return (x->k2 < y->k2 ? -1 : 1);
	}
	return (x->doc < y->doc ? -1 : x->doc > y->doc);
}

static int
build_orders(hotel_dataset *ds, hotel__mem *mem)
{
	size_t            n = ds->n;
	struct order_key *k = malloc((n ? n : 1) * sizeof(*k));

	ds->rating_order = hotel__alloc(mem, n * sizeof(uint32_t));
	ds->price_order = hotel__alloc(mem, n * sizeof(uint32_t));
	if (k == NULL || ds->rating_order == NULL || ds->price_order == NULL) {
		free(k);
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t bits;
		memcpy(&bits, &ds->hotels[i].rating, sizeof(bits));
		k[i].k1 = ~bits; /* ratings are >= 0: bits order as values */
		k[i].k2 = ~ds->hotels[i].review_count;
		k[i].doc = (uint32_t) i;
	}
	qsort(k, n, sizeof(*k), order_key_cmp);
	for (size_t i = 0; i < n; i++) {
		ds->rating_order[i] = k[i].doc;
		k[i].k1 = (uint64_t) ds->price[i];
		k[i].k2 = 0;
		k[i].doc = (uint32_t) i;
	}
	qsort(k, n, sizeof(*k), order_key_cmp);
	for (size_t i = 0; i < n; i++) {
		ds->price_order[i] = k[i].doc;
	}
	free(k);
	return (HOTEL_OK);
}

static int
build_columns(hotel_dataset *ds)
{
	size_t n = ds->n;

	ds->stars = hotel__alloc(&ds->mem, n * sizeof(uint8_t));
	ds->amenities = hotel__alloc(&ds->mem, n * sizeof(uint32_t));
	ds->price = hotel__alloc(&ds->mem, n * sizeof(int64_t));
	if (ds->stars == NULL || ds->amenities == NULL || ds->price == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < n; i++) {
		const hotel *h = &ds->hotels[i];
		hotel__city *c = &ds->cities[ds->city_of[i]];
		ds->stars[i] = (uint8_t) h->stars;
		ds->amenities[i] = h->amenities;
		ds->price[i] = h->price_cents;
		c->reviews += h->review_count;
		c->hotels++;
	}
	return (HOTEL_OK);
}

static int
build_lat_order(hotel_dataset *ds, hotel__mem *mem)
{
	size_t          n = ds->n;
	struct lat_doc *ld = malloc((n ? n : 1) * sizeof(*ld));

	ds->lat_order = hotel__alloc(mem, n * sizeof(uint32_t));
	ds->lat_sorted = hotel__alloc(mem, n * sizeof(double));
	ds->lon_by_lat = hotel__alloc(mem, n * sizeof(double));
	if (ds->lat_order == NULL || ds->lat_sorted == NULL
	    || ds->lon_by_lat == NULL || ld == NULL) {
		free(ld);
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < n; i++) {
		ld[i].lat = ds->hotels[i].latitude;
		ld[i].doc = (uint32_t) i;
	}
	qsort(ld, n, sizeof(*ld), lat_doc_cmp);
	for (size_t i = 0; i < n; i++) {
		ds->lat_sorted[i] = ld[i].lat;
		ds->lat_order[i] = ld[i].doc;
		ds->lon_by_lat[i] = ds->hotels[ld[i].doc].longitude;
	}
	free(ld);
	return (HOTEL_OK);
}

static uint64_t
hash_str(uint64_t h, const char *s)
{
	return (hotel__hash(s, strlen(s) + 1, h));
}

static uint64_t
hash_double(uint64_t h, double d)
{
	uint64_t bits;
	memcpy(&bits, &d, sizeof(bits));
	return (hotel__hash_u64(h, bits));
}

static uint64_t
content_hash(const hotel_dataset *ds)
{
	uint64_t h = hotel__hash_u64(UINT64_C(0x686f74656c), ds->n);

	for (size_t i = 0; i < ds->n; i++) {
		const hotel *x = &ds->hotels[i];
		h = hotel__hash_u64(h, x->id);
		h = hash_str(h, x->name);
		h = hash_str(h, x->city);
		h = hash_str(h, x->country);
		h = hash_str(h, x->description);
		h = hash_double(h, x->latitude);
		h = hash_double(h, x->longitude);
		h = hotel__hash_u64(h, (uint64_t) x->stars);
		h = hotel__hash_u64(h, (uint64_t) x->price_cents);
		h = hash_double(h, x->rating);
		h = hotel__hash_u64(h, x->review_count);
		h = hotel__hash_u64(h, x->amenities);
	}
	return (h);
}

/* The second build thread's work: everything but the columns and the
 * index. It reads the hotels and the columns, writes fields nothing else
 * writes, and counts into its own mem until the join. Its ticker shares
 * its result with the index's, so a stop either thread sees ends both. */
typedef struct side_job {
	hotel_dataset *ds;
	hotel__mem     mem;
	hotel__ticker  stop;
	int            rv;
} side_job;

static void *
side_thread(void *arg)
{
	side_job      *sb = arg;
	hotel_dataset *ds = sb->ds;

	if ((sb->rv = build_lat_order(ds, &sb->mem)) != HOTEL_OK
	    || (sb->rv = hotel__ticker_poll(&sb->stop)) != HOTEL_OK
	    || (sb->rv = build_orders(ds, &sb->mem)) != HOTEL_OK
	    || (sb->rv = hotel__ticker_poll(&sb->stop)) != HOTEL_OK
	    || (sb->rv = hotel__suggest_build(ds, &sb->mem, &sb->stop))
	        != HOTEL_OK) {
		return (NULL);
	}
	ds->id_hash = content_hash(ds);
	return (NULL);
}

/* The index on this thread; the orders, the suggestions and the content
 * hash on another (they read the same finished columns and write disjoint
 * fields). Returns HOTEL_OK, HOTEL_ENOMEM or the stop's reason. */
static int
build_tables(hotel_dataset *ds, const hotel_stop *stop)
{
	atomic_int    shared = HOTEL_OK; /* both tickers' result */
	side_job      sb = { .ds = ds };
	hotel__ticker t;
	pthread_t     tid;
	bool          joined = true;
	int           rv;

	hotel__ticker_init(&t, stop, &shared);
	hotel__ticker_init(&sb.stop, stop, &shared);
	if (pthread_create(&tid, NULL, side_thread, &sb) != 0) {
		side_thread(&sb); /* no thread: do it here */
	} else {
		joined = false;
	}
	rv = hotel__index_build(&ds->index, &ds->mem, ds->hotels, ds->n, &t);
	if (!joined) {
		pthread_join(tid, NULL);
	}
	ds->mem.bytes += sb.mem.bytes;
	return (rv != HOTEL_OK ? rv : sb.rv);
}

int
hotel__dataset_finish(
    hotel_dataset *ds, const hotel_stop *stop, char *err, size_t errlen)
{
	struct timespec now;
	int             rv;

	if ((rv = hotel_stop_check(stop)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	if ((rv = sort_by_id(ds, err, errlen)) != HOTEL_OK) {
		return (rv);
	}
	hotel__strmap_fini(&ds->city_map);
	if ((rv = build_columns(ds)) != HOTEL_OK
	    || (rv = hotel_stop_check(stop)) != HOTEL_OK
	    || (rv = build_tables(ds, stop)) != HOTEL_OK) {
		/* "out of memory", "cancelled" or "deadline exceeded" */
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	snprintf(ds->id_str, sizeof(ds->id_str), "%016llx",
	    (unsigned long long) ds->id_hash);
	ds->build_ms = (double) (hotel_now_ns() - ds->started_ns) / 1e6;
	clock_gettime(CLOCK_REALTIME, &now);
	ds->loaded_unix_ms
	    = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
	return (HOTEL_OK);
}

int
hotel_dataset_from_array(const hotel *hotels, size_t n, hotel_dataset **dsp,
    char *err, size_t errlen)
{
	hotel_dataset *ds;
	char           msg[256];
	int            rv;

	if (hotels == NULL && n > 0) {
		return (hotel__err(HOTEL_EINVAL, err, errlen, "hotels: NULL"));
	}
	if ((rv = hotel__dataset_new(&ds, "array n=%zu", n)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "out of memory"));
	}
	for (size_t i = 0; i < n; i++) {
		if ((rv = hotel__hotel_check(&hotels[i], msg, sizeof(msg)))
		    != HOTEL_OK) {
			hotel__dataset_destroy(ds);
			return (hotel__err(
			    rv, err, errlen, "hotel[%zu]: %s", i, msg));
		}
		if ((rv = hotel__dataset_add(ds, &hotels[i])) != HOTEL_OK) {
			hotel__dataset_destroy(ds);
			return (hotel__err(rv, err, errlen, "out of memory"));
		}
	}
	if ((rv = hotel__dataset_finish(ds, NULL, err, errlen)) != HOTEL_OK) {
		hotel__dataset_destroy(ds);
		return (rv);
	}
	*dsp = ds;
	return (HOTEL_OK);
}

hotel_dataset *
hotel_dataset_retain(hotel_dataset *ds)
{
	atomic_fetch_add_explicit(&ds->refs, 1, memory_order_relaxed);
	return (ds);
}

void
hotel_dataset_release(hotel_dataset *ds)
{
	if (ds == NULL) {
		return;
	}
	/* acq_rel: the thread that frees sees every other reader's
	 * accesses as done. */
	if (atomic_fetch_sub_explicit(&ds->refs, 1, memory_order_acq_rel)
	    == 1) {
		hotel__dataset_destroy(ds);
	}
}

size_t
hotel_dataset_count(const hotel_dataset *ds)
{
	return (ds->n);
}

const hotel *
hotel_dataset_at(const hotel_dataset *ds, size_t i)
{
	return (i < ds->n ? &ds->hotels[i] : NULL);
}

int
hotel_get(const hotel_dataset *ds, uint64_t id, const hotel **hp)
{
	size_t lo = 0, hi = ds->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ds->hotels[mid].id < id) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	if (lo == ds->n || ds->hotels[lo].id != id) {
		return (HOTEL_ENOTFOUND);
	}
	*hp = &ds->hotels[lo];
	return (HOTEL_OK);
}

void
hotel_dataset_stats(const hotel_dataset *ds, hotel_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->hotel_count = ds->n;
	memcpy(st->dataset_id, ds->id_str, sizeof(st->dataset_id));
	st->build_ms = ds->build_ms;
	st->loaded_at_unix_ms = ds->loaded_unix_ms;
	st->memory_bytes = ds->mem.bytes;
	st->index_bytes = ds->index.bytes;
	st->term_count = ds->index.n_terms;
	st->posting_count = ds->index.n_post;
	st->city_count = ds->n_cities;
	st->source = ds->source;
}
