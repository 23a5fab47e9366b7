/*
 * The dataset's insides, shared by the files that build and query it.
 */
#ifndef ENGINE_DATASET_H
#define ENGINE_DATASET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "hotel.h"
#include "index.h"
#include "mem.h"
#include "suggest.h"

/* A (city, country) pair. */
typedef struct hotel__city {
	const char *name;    /* in the dataset's strings */
	const char *country; /* in the dataset's strings */
	uint64_t    reviews; /* sum of its hotels' review counts */
	uint32_t    hotels;  /* number of its hotels */
} hotel__city;

struct hotel_dataset {
	atomic_size_t refs;
	hotel__mem    mem; /* every byte below */
	hotel__arena  strings;

	hotel *hotels; /* sorted by id once built; doc i = hotels[i] */
	size_t n, cap;

	/* Columns by doc, for the filters. */
	uint8_t  *stars;
	uint32_t *amenities;
	int64_t  *price;
	uint32_t *city_of; /* city id */
	size_t    cap_city_of;

	hotel__city *cities;
	size_t       n_cities, cap_cities;

	/* Docs in RATING and PRICE order, for queries with no words. */
	uint32_t *rating_order;
	uint32_t *price_order;

	/* Docs sorted by latitude, for geo queries with no words. */
	uint32_t *lat_order;
	double   *lat_sorted;
	double   *lon_by_lat; /* longitude of lat_order[i] */

	hotel__index   index;
	hotel__suggest suggest;

	uint64_t id_hash;
	char     id_str[17];
	char    *source;
	double   build_ms;
	int64_t  loaded_unix_ms;
	int64_t  started_ns;

	/* Only while building. */
	hotel__mem    scratch_mem;
	hotel__strmap city_map; /* "city\0country" -> city id */
};

/* Starts an empty dataset. source is copied (printf-style). Returns
 * HOTEL_OK or HOTEL_ENOMEM. */
int hotel__dataset_new(hotel_dataset **dsp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checks h as the loader does; on failure writes "field: problem" into err
 * and returns HOTEL_EINVAL. */
int hotel__hotel_check(const hotel *h, char *err, size_t errlen);

/* Adds a copy of h (its strings copied, city and country interned). The
 * caller has checked it. Returns HOTEL_OK or HOTEL_ENOMEM. */
int hotel__dataset_add(hotel_dataset *ds, const hotel *h);

/* Sorts by id (duplicates are HOTEL_EINVAL "id: duplicate id N"), builds the
 * columns, index and suggestions, and the dataset id. stop (NULL: none) may
 * end it with HOTEL_EDEADLINE or HOTEL_ECANCELED. On success the dataset
 * has one reference and is immutable; on failure the caller destroys it. */
int hotel__dataset_finish(
    hotel_dataset *ds, const hotel_stop *stop, char *err, size_t errlen);

/* Frees a dataset that was never published (or whose count hit zero). */
void hotel__dataset_destroy(hotel_dataset *ds);

/* snprintf into err if err is not NULL; returns rv. */
int hotel__err(int rv, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* ENGINE_DATASET_H */
