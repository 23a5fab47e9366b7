/*
 * The places engine: a fixed table of landmarks, great-circle distances,
 * and the landmarks nearest to a point. A plain C library, no RPC types:
 * placesd.c maps messages to these calls. Every function is pure over the
 * constant table, so any thread may call any of them at any time.
 */
#ifndef PLACES_H
#define PLACES_H

#include <stdbool.h>

/* Most landmarks places_nearest() returns, and how many it returns when
 * asked for 0. */
#define PLACES_MAX     50
#define PLACES_DEFAULT 5

typedef struct places_hit {
	const char *name; /* static */
	double      km;
} places_hit;

/* Sets *km to the great-circle distance between two landmarks named
 * exactly from and to. Returns false, leaving *km alone, when either is
 * not a landmark. */
bool places_distance(const char *from, const char *to, double *km);

/* Writes the limit landmarks nearest to (latitude, longitude) into hits,
 * nearest first (limit 0: PLACES_DEFAULT), and returns how many it wrote
 * (fewer when there are fewer landmarks). Returns -1 when latitude is not
 * in -90..90, longitude not in -180..180 or limit above PLACES_MAX. */
int places_nearest(double latitude, double longitude, unsigned limit,
    places_hit hits[PLACES_MAX]);

#endif /* PLACES_H */
