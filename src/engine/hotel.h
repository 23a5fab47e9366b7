/*
 * libhotelengine: the hotel search engine, a plain C11 library.
 *
 * A dataset (hotel_dataset) is a set of hotels plus everything built from
 * them at load time: an inverted index over name, city, country and
 * description, a prefix dictionary for suggestions, per-hotel columns for the
 * filters, a city table. It is immutable once built and reference counted,
 * so any number of threads may query it at once without locks.
 *
 * An engine (hotel_engine) holds the dataset being served. A reload builds a
 * new dataset to the side and swaps it in; queries that acquired the old one
 * finish on it, and it is freed when the last of them releases it:
 *
 *   hotel_dataset *ds = hotel_engine_acquire(engine);
 *   rv = hotel_search(ds, &query, &result, err, sizeof(err));
 *   ... use result (it points into ds) ...
 *   hotel_result_free(result);
 *   hotel_dataset_release(ds);
 *
 * Conventions. Functions return HOTEL_OK (0) or an hotel_errno code; out
 * parameters are written only on success. Where a message helps, the caller
 * passes a buffer (err, errlen; err may be NULL) that receives one line
 * naming the field or the input line, e.g. "page_token: malformed" or
 * "line 17: stars: must be 1..5, got 7". Ownership is stated on each function
 * with four verbs: borrows, takes, returns new, consumes. Strings are UTF-8.
 *
 * Nothing here knows about RPC or protobuf; src/service/ maps these types to
 * the wire.
 */
#ifndef ENGINE_HOTEL_H
#define ENGINE_HOTEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ------------------------------------------------------------ */

/* XX(NAME, number, "description"): one table for the enum and the strings. */
#define HOTEL_ERRNO_MAP(XX)                                                   \
	XX(OK, 0, "ok")                                                       \
	XX(EINVAL, 1, "invalid argument")                                     \
	XX(ENOMEM, 2, "out of memory")                                        \
	XX(ENOTFOUND, 3, "not found")                                         \
	XX(EDEADLINE, 4, "deadline exceeded")                                 \
	XX(EIO, 5, "input/output error")                                      \
	XX(EPARSE, 6, "parse error")                                          \
	XX(ECANCELED, 7, "cancelled")

enum hotel_errno {
#define HOTEL_ERRNO_ENUM(name, num, desc) HOTEL_##name = num,
	HOTEL_ERRNO_MAP(HOTEL_ERRNO_ENUM)
#undef HOTEL_ERRNO_ENUM
};

/* Returns a static string for an hotel_errno code ("unknown error" for
 * anything else). */
const char *hotel_strerror(int err);

/* ---- amenities ---------------------------------------------------------- */

/* XX(NAME, bit, "name"): amenities are bits of hotel.amenities. The names are
 * the ones used in JSON Lines files. Never renumber: bits are stable. */
#define HOTEL_AMENITY_MAP(XX)                                                 \
	XX(WIFI, 0, "wifi")                                                   \
	XX(POOL, 1, "pool")                                                   \
	XX(SPA, 2, "spa")                                                     \
	XX(GYM, 3, "gym")                                                     \
	XX(PARKING, 4, "parking")                                             \
	XX(BREAKFAST, 5, "breakfast")                                         \
	XX(PETS, 6, "pets")                                                   \
	XX(BEACH, 7, "beach")                                                 \
	XX(RESTAURANT, 8, "restaurant")                                       \
	XX(BAR, 9, "bar")                                                     \
	XX(AIR_CONDITIONING, 10, "air_conditioning")                          \
	XX(AIRPORT_SHUTTLE, 11, "airport_shuttle")                            \
	XX(KITCHEN, 12, "kitchen")                                            \
	XX(EV_CHARGING, 13, "ev_charging")                                    \
	XX(SAUNA, 14, "sauna")                                                \
	XX(FAMILY_ROOMS, 15, "family_rooms")                                  \
	XX(ROOM_SERVICE, 16, "room_service")                                  \
	XX(ACCESSIBLE, 17, "accessible")

typedef enum hotel_amenity {
#define HOTEL_AMENITY_ENUM(name, bit, str) HOTEL_AMENITY_##name = bit,
	HOTEL_AMENITY_MAP(HOTEL_AMENITY_ENUM)
#undef HOTEL_AMENITY_ENUM
	    HOTEL_AMENITY_COUNT /* number of amenities */
} hotel_amenity;

#define HOTEL_AMENITY_BIT(a) (UINT32_C(1) << (a))
/* Every valid amenity bit. */
#define HOTEL_AMENITY_ALL (HOTEL_AMENITY_BIT(HOTEL_AMENITY_COUNT) - 1)

/* Returns the static name of an amenity ("wifi"), or NULL if a is not one. */
const char *hotel_amenity_name(int a);

/* Returns the amenity called name, or -1. Accepts the JSON name ("wifi",
 * "air_conditioning"), any case, with or without an "AMENITY_" prefix (as a
 * protobuf enum name would be written). */
int hotel_amenity_from_name(const char *name);

/* ---- hotels --------------------------------------------------------------
 */

typedef struct hotel {
	uint64_t    id;          /* unique in a dataset */
	const char *name;        /* non-empty */
	const char *city;        /* non-empty */
	const char *country;     /* non-empty */
	const char *description; /* may be "" */
	double      latitude;    /* degrees, -90..90 */
	double      longitude;   /* degrees, -180..180 */
	int         stars;       /* 1..5 */
	int64_t     price_cents; /* per night, >= 0 */
	double      rating;      /* 0..10, one decimal in generated data */
	uint32_t    review_count;
	uint32_t    amenities; /* HOTEL_AMENITY_BIT()s */
} hotel;

/* Great-circle (haversine) distance in km on a sphere of radius
 * HOTEL_EARTH_RADIUS_KM (the IUGG mean radius). */
#define HOTEL_EARTH_RADIUS_KM 6371.0088
double hotel_distance_km(double lat1, double lon1, double lat2, double lon2);

/* ---- the world: real cities the generator places hotels in ------------- */

typedef enum hotel_continent {
	HOTEL_AFRICA,
	HOTEL_ASIA,
	HOTEL_EUROPE,
	HOTEL_NORTH_AMERICA, /* with Central America and the Caribbean */
	HOTEL_SOUTH_AMERICA,
	HOTEL_OCEANIA,
	HOTEL_CONTINENT_COUNT
} hotel_continent;

typedef struct hotel_world_city {
	const char     *name; /* as locals write it: "São Paulo", "Zürich" */
	const char     *country; /* in English */
	double          latitude;
	double          longitude;
	hotel_continent continent;
	int             weight; /* relative share of generated hotels, 1..9 */
	int             cost_pct; /* price level, 100 = average */
} hotel_world_city;

/* Returns the static table of cities (never NULL); *np gets its length. */
const hotel_world_city *hotel_world_cities(size_t *np);

/* Returns a static name ("Europe") or NULL. */
const char *hotel_continent_name(int c);

/* ---- stopping: deadlines and cancellation ---------------------------------
 *
 * Queries (hotel_search, hotel_suggest) and dataset builds (generate, JSON
 * Lines, the engine's reloads) take a hotel_stop: an absolute deadline, and
 * optionally a way to learn that the caller gave up (a client hung up or
 * cancelled its call). The engine looks at both when it starts, then every
 * HOTEL_STOP_EVERY units of work of each of its loops (documents, postings
 * or suggestion entries visited; hotels generated, lines read, documents
 * indexed) and between the steps of a build. Once the call is cancelled or
 * the deadline has passed, it stops, frees what it had made and returns
 * HOTEL_ECANCELED ("cancelled") or HOTEL_EDEADLINE ("deadline exceeded");
 * cancellation is looked at first. There is no partial result: out
 * parameters are left alone, and a reload that stops leaves the engine
 * serving the dataset it had. A stop lands within a few milliseconds of
 * work, except while a build sorts (ids, orders, suggestion entries: a sort
 * runs to its end): a build of a million hotels cancelled at random points
 * returned 2 to 225 ms after the cancel.
 *
 * Threads and ownership. cancelled(cancel_arg) is called on the thread that
 * called the engine and, during a dataset build, on the build's second
 * thread as well, possibly at the same time: it must be thread-safe, cheap,
 * and must not call back into the engine. The usual one reads an atomic flag
 * that another thread sets (hotel_stop_flag). The hotel_stop, cancel_arg and
 * whatever it points to are borrowed for the call: the caller keeps them
 * valid until the call returns, and the engine keeps nothing after.
 *
 * The RPC layer maps HOTEL_EDEADLINE to DEADLINE_EXCEEDED and HOTEL_ECANCELED
 * to CANCELLED. */

/* Deadlines are CLOCK_MONOTONIC nanoseconds (hotel_now_ns() + timeout).
 * HOTEL_DEADLINE_NONE (INT64_MAX), and also 0, so that a zeroed hotel_stop
 * never stops, mean none. */
#define HOTEL_DEADLINE_NONE INT64_MAX

/* Units of work between two looks at the clock and the cancel function. */
#define HOTEL_STOP_EVERY 1024

/* Returns true once the call is cancelled. */
typedef bool hotel_cancelled_fn(void *cancel_arg);

typedef struct hotel_stop {
	int64_t             deadline_ns; /* see HOTEL_DEADLINE_NONE */
	hotel_cancelled_fn *cancelled;   /* NULL: never cancelled */
	void               *cancel_arg;  /* passed to cancelled; borrowed */
} hotel_stop;

/* A hotel_cancelled_fn for a flag: cancel_arg points to a C11 atomic_bool
 * (<stdatomic.h>) that any thread sets with atomic_store(); returns its
 * value. */
bool hotel_stop_flag(void *cancel_arg);

/* Looks at stop now: HOTEL_ECANCELED, HOTEL_EDEADLINE, or HOTEL_OK (also
 * for NULL). Borrows stop. Thread-safe as its cancel function is. */
int hotel_stop_check(const hotel_stop *stop);

/* CLOCK_MONOTONIC now, in nanoseconds. */
int64_t hotel_now_ns(void);

/* ---- datasets -------------------------------------------------------------
 */

typedef struct hotel_dataset hotel_dataset;

/* Default and largest count for hotel_dataset_generate(). */
#define HOTEL_GENERATE_DEFAULT 100000
#define HOTEL_GENERATE_MAX     20000000

/* Generates count hotels (1..HOTEL_GENERATE_MAX) from seed, deterministically:
 * the same (count, seed) gives a byte-identical dataset on every machine
 * (own PRNG; no libm transcendental functions in the generator). Ids are
 * 1..count. stop (NULL: none) may end the build early (see "stopping").
 * Returns new: *dsp, with one reference, released with
 * hotel_dataset_release(). Errors: HOTEL_EINVAL, HOTEL_ENOMEM,
 * HOTEL_EDEADLINE, HOTEL_ECANCELED. */
int hotel_dataset_generate(
    size_t count, uint64_t seed, const hotel_stop *stop, hotel_dataset **dsp);

/* Loads a JSON Lines file: one hotel per line, as protobuf's json_format
 * writes the Hotel message (lowerCamelCase names; the proto field names,
 * e.g. "price_cents", are accepted too):
 *
 *   {"id": "123", "name": "Hôtel Bellevue", "city": "Paris",
 *    "country": "France", "latitude": 48.85, "longitude": 2.35,
 *    "stars": 4, "priceCents": "18900", "rating": 8.7, "reviewCount": 412,
 *    "amenities": ["wifi", "spa"], "description": "..."}
 *
 * Required: id (> 0), name, city, country (non-empty strings), stars (1..5).
 * Optional, since proto3 JSON leaves out zero values: latitude (-90..90) and
 * longitude (-180..180) default 0, priceCents (>= 0), rating (0..10),
 * reviewCount (0..2^32-1), amenities (names, see hotel_amenity_from_name),
 * description. Integers may be JSON numbers or decimal strings. Blank lines
 * are skipped; unknown fields are errors. The first bad line fails the load
 * with HOTEL_EPARSE and a message such as "line 17: stars: must be 1..5, got
 * 7"; duplicate ids name both lines. A file that cannot be read gives
 * HOTEL_EIO. stop (NULL: none) may end the load early with HOTEL_EDEADLINE
 * or HOTEL_ECANCELED (see "stopping"). Borrows path. Returns new: *dsp, one
 * reference. */
int hotel_dataset_load_jsonl(const char *path, const hotel_stop *stop,
    hotel_dataset **dsp, char *err, size_t errlen);

/* As hotel_dataset_load_jsonl() from an open stream; name (borrowed) is used
 * in Stats' source. Borrows f and reads it to the end (or to where stop
 * ended the load), does not close it. */
int hotel_dataset_read_jsonl(FILE *f, const char *name, const hotel_stop *stop,
    hotel_dataset **dsp, char *err, size_t errlen);

/* Builds a dataset from n hotels (validated as the loader does; messages
 * say "hotel[i]: ..."). It takes no hotel_stop: it always runs to the end.
 * Borrows hotels and their strings (they are copied). Returns new: *dsp,
 * one reference. Errors: HOTEL_EINVAL, HOTEL_ENOMEM. */
int hotel_dataset_from_array(const hotel *hotels, size_t n,
    hotel_dataset **dsp, char *err, size_t errlen);

/* Writes the dataset as JSON Lines in id order, in the format the loader
 * reads (id and priceCents as strings, as proto3 JSON does; every field
 * written; numbers in their shortest round-trip form), so that writing then
 * loading gives an identical dataset (same dataset id). Borrows ds and f.
 * Returns HOTEL_OK or HOTEL_EIO. */
int hotel_dataset_write_jsonl(const hotel_dataset *ds, FILE *f);

/* Adds a reference; returns ds. Thread-safe. */
hotel_dataset *hotel_dataset_retain(hotel_dataset *ds);

/* Consumes one reference; the last one frees the dataset and everything
 * that points into it (hotels, results' strings). NULL is a no-op.
 * Thread-safe. */
void hotel_dataset_release(hotel_dataset *ds);

/* Number of hotels. */
size_t hotel_dataset_count(const hotel_dataset *ds);

/* The i-th hotel in id order (i < count), borrowed from ds; NULL if out of
 * range. */
const hotel *hotel_dataset_at(const hotel_dataset *ds, size_t i);

/* Looks a hotel up by id (binary search over the id-sorted array). Writes
 * *hp, borrowed from ds (valid while the caller holds its reference).
 * Returns HOTEL_OK or HOTEL_ENOTFOUND. */
int hotel_get(const hotel_dataset *ds, uint64_t id, const hotel **hp);

typedef struct hotel_stats {
	uint64_t hotel_count;
	/* 16 lower-case hex digits: a 64-bit hash of the content (every field
	 * of every hotel, in id order), so the same data gives the same id on
	 * every machine and across restarts; page tokens carry it. */
	char    dataset_id[17];
	double  build_ms;          /* wall time spent loading and indexing */
	int64_t loaded_at_unix_ms; /* CLOCK_REALTIME when the build ended */
	/* Bytes requested from malloc for everything the dataset holds
	 * (hotels, strings, columns, index, suggestions), counted by the
	 * engine's allocator wrapper; malloc's own overhead excluded. */
	uint64_t memory_bytes;
	uint64_t index_bytes; /* the part of memory_bytes in the index */
	uint64_t term_count;  /* distinct tokens in the inverted index */
	uint64_t posting_count;
	uint64_t city_count; /* distinct (city, country) pairs */
	/* "generate count=100000 seed=42" or "jsonl /path/to/file";
	 * borrowed from the dataset. */
	const char *source;
} hotel_stats;

/* Fills *st. Borrows ds; st->source points into it. */
void hotel_dataset_stats(const hotel_dataset *ds, hotel_stats *st);

/* ---- engine: the dataset being served, swapped on reload -------------------
 *
 * The engine holds one reference to the current dataset, under a mutex taken
 * only to read or replace that pointer (and to bump the count), never while
 * building or querying. */

typedef struct hotel_engine hotel_engine;

/* Opens an engine serving initial. Takes initial (one reference) on success;
 * on failure (HOTEL_EINVAL if initial is NULL, HOTEL_ENOMEM) the caller
 * keeps it. Returns new: *enginep, freed with hotel_engine_close(). */
int hotel_engine_open(hotel_dataset *initial, hotel_engine **enginep);

/* Releases the engine's reference to its dataset and frees the engine.
 * Datasets acquired earlier stay valid until released. The caller makes sure
 * no other thread still uses the engine. NULL is a no-op. */
void hotel_engine_close(hotel_engine *engine);

/* Returns new: a reference to the current dataset (never NULL), to be
 * released with hotel_dataset_release(). Thread-safe. */
hotel_dataset *hotel_engine_acquire(hotel_engine *engine);

/* Makes next the current dataset and releases the engine's reference to the
 * previous one (freed when its last reader releases it). Takes next (one
 * reference; must not be NULL). Thread-safe. */
void hotel_engine_swap(hotel_engine *engine, hotel_dataset *next);

/* Builds a dataset from a JSON Lines file to the side and swaps it in. On
 * failure, a stop (HOTEL_EDEADLINE, HOTEL_ECANCELED) included, what was
 * built is freed and the current dataset keeps serving, untouched.
 * Thread-safe; errors as hotel_dataset_load_jsonl(). */
int hotel_engine_reload_jsonl(hotel_engine *engine, const char *path,
    const hotel_stop *stop, char *err, size_t errlen);

/* As hotel_engine_reload_jsonl() from the generator; errors as
 * hotel_dataset_generate(). */
int hotel_engine_reload_generate(
    hotel_engine *engine, size_t count, uint64_t seed, const hotel_stop *stop);

/* ---- search ---------------------------------------------------------------
 */

typedef enum hotel_sort {
	HOTEL_SORT_RELEVANCE = 0, /* BM25F score desc, then id asc; with no
	                             query words: id asc */
	HOTEL_SORT_RATING,        /* rating desc, review_count desc, id asc */
	HOTEL_SORT_PRICE,         /* price_cents asc, id asc */
	HOTEL_SORT_DISTANCE,      /* distance asc, id asc; needs has_geo */
	HOTEL_SORT_COUNT
} hotel_sort;

#define HOTEL_PAGE_SIZE_MAX  100
#define HOTEL_MAX_WORDS      32 /* query words; more is HOTEL_EINVAL */
#define HOTEL_TOP_CITIES_DEF 10 /* city facet size when top_cities is 0 */
#define HOTEL_TOP_CITIES_MAX 1000

/* A query. Values are taken as validated by the caller (the service maps
 * "page_size 0 means 10" and such); the engine still rejects out-of-range
 * ones with HOTEL_EINVAL and a message naming the field.
 *
 * Text: words are folded (lower case, Latin accents removed: "Zürich" ->
 * "zurich", "Straße" -> "strasse") and split on anything that is not a
 * letter or digit. Every word must occur in the name, city, country or
 * description of a hotel (AND); the last word matches as a prefix ("par"
 * finds "paris", "park"), for search-as-you-type. Text with no words (NULL,
 * "", "!!") matches every hotel. */
typedef struct hotel_query {
	const char *text; /* borrowed; NULL = no words */
	/* Geo filter: hotels within radius_km (> 0) of (lat, lon). */
	bool        has_geo;
	double      lat, lon, radius_km;
	int         min_stars;       /* 0 = any, else 1..5 */
	int64_t     max_price_cents; /* 0 = any, else > 0 */
	uint32_t    amenities_all;   /* hotels must have all these bits */
	hotel_sort  sort;
	uint32_t    page_size;  /* 1..HOTEL_PAGE_SIZE_MAX */
	const char *page_token; /* borrowed; NULL or "" = first page */
	/* Facets over all matching hotels, not just the page: counts by
	 * stars and the top_cities cities (0 = HOTEL_TOP_CITIES_DEF). */
	bool       facets;
	uint32_t   top_cities;
	hotel_stop stop; /* see "stopping"; zeroed: never stops */
} hotel_query;

typedef struct hotel_hit {
	const hotel *hotel;       /* borrowed from the dataset */
	double       score;       /* BM25F; 0 when the query has no words */
	double       distance_km; /* from the geo centre; 0 without has_geo */
} hotel_hit;

typedef struct hotel_city_count {
	const char *city;    /* borrowed from the dataset */
	const char *country; /* borrowed from the dataset */
	uint64_t    count;
} hotel_city_count;

/* Page tokens are at most this long, with the NUL. */
#define HOTEL_PAGE_TOKEN_MAX 64

typedef struct hotel_result {
	hotel_hit *hits; /* the page, in sort order */
	size_t     n_hits;
	uint64_t   total; /* hotels matching, over all pages */
	/* Opaque token for the next page, "" on the last one. */
	char next_page_token[HOTEL_PAGE_TOKEN_MAX];
	/* With query.facets: stars_facet[s] hotels with s stars (index 0
	 * unused); cities by count desc, then city and country asc. */
	bool              has_facets;
	uint64_t          stars_facet[6];
	hotel_city_count *cities;
	size_t            n_cities;
} hotel_result;

/* Runs a query. Ranking: BM25F (k1 = 1.2, b = 0.75 in every field; field
 * weights name 3, city 2, country 1.5, description 1), a sum over the query
 * words; the last (prefix) word scores as the best of the terms it expands
 * to in that hotel. The order is total (ties by id), so results and pages
 * are deterministic.
 *
 * Paging: the next page token carries the offset, a hash of the query (the
 * folded words, filters and sort; not page_size or facets, which may change
 * between pages) and the dataset id. A token that does not parse, comes
 * from another query or from a dataset since reloaded is HOTEL_EINVAL with
 * "page_token: malformed", "page_token: from a different query" or
 * "page_token: stale, the dataset has been reloaded".
 *
 * Borrows ds and q. Returns new: *resultp, freed with hotel_result_free();
 * it points into ds, so the caller keeps its dataset reference until then.
 * Errors: HOTEL_EINVAL (message names the field), HOTEL_EDEADLINE,
 * HOTEL_ECANCELED, HOTEL_ENOMEM. Thread-safe. Each calling thread keeps up to
 * 2 MiB of scratch between queries (for prefix unions; not in Stats), freed
 * when the thread exits. */
int hotel_search(const hotel_dataset *ds, const hotel_query *q,
    hotel_result **resultp, char *err, size_t errlen);

/* Frees a result. NULL is a no-op. */
void hotel_result_free(hotel_result *result);

/* ---- suggest --------------------------------------------------------------
 */

typedef enum hotel_suggest_kind {
	HOTEL_SUGGEST_CITY = 1,
	HOTEL_SUGGEST_HOTEL = 2,
} hotel_suggest_kind;

typedef struct hotel_suggestion {
	hotel_suggest_kind kind;
	const char        *text;     /* the city or hotel name; borrowed */
	const char        *city;     /* the city, or the hotel's; borrowed */
	const char        *country;  /* borrowed */
	uint64_t           hotel_id; /* HOTEL: the hotel; CITY: 0 */
	/* The rank: HOTEL: its review count; CITY: the sum of the review
	 * counts of its hotels. */
	uint64_t weight;
} hotel_suggestion;

#define HOTEL_SUGGEST_MAX 100

/* Completes prefix over city names and hotel names. The prefix and names
 * are folded as search words are and compared as word sequences; the prefix
 * matches at the start of the name or at the start of any word in it
 * ("pal" and "grand pal" both find "Grand Palace Tokyo"); a trailing space
 * or other separator ends the last word ("grand " does not find
 * "Grandview"). Results are deduplicated: one per city (a city and country
 * pair) and one per distinct folded hotel name (the one with the most
 * reviews, then the lowest id, stands for all); ranked by weight desc, then
 * cities before hotels, then folded text, then id. A prefix with no words
 * gives no suggestions.
 *
 * limit is 1..HOTEL_SUGGEST_MAX. Borrows ds and prefix. Returns new: *sp
 * (NULL when *np is 0), freed with hotel_suggestions_free(); it points into
 * ds. stop: see "stopping" (NULL: none). Errors: HOTEL_EINVAL,
 * HOTEL_EDEADLINE, HOTEL_ECANCELED, HOTEL_ENOMEM. Thread-safe. */
int hotel_suggest(const hotel_dataset *ds, const char *prefix, size_t limit,
    const hotel_stop *stop, hotel_suggestion **sp, size_t *np, char *err,
    size_t errlen);

/* Frees suggestions. NULL is a no-op. */
void hotel_suggestions_free(hotel_suggestion *s);

#endif /* ENGINE_HOTEL_H */
