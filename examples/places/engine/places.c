/*
 * The places engine (places.h): haversine distances on a sphere of the
 * Earth's mean radius over a table of landmarks; nearest by a full scan and
 * a sort, which is what a table of this size wants.
 */
#include "places.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EARTH_RADIUS_KM 6371.0088
#define RADIANS(d)      ((d) *3.14159265358979323846 / 180.0)

typedef struct landmark {
	const char *name;
	double      latitude, longitude;
} landmark;

static const landmark landmarks[] = {
	{ "Eiffel Tower", 48.8584, 2.2945 },
	{ "Louvre", 48.8606, 2.3376 },
	{ "Notre-Dame de Paris", 48.8530, 2.3499 },
	{ "Mont Saint-Michel", 48.6361, -1.5115 },
	{ "Big Ben", 51.5007, -0.1246 },
	{ "Tower of London", 51.5081, -0.0759 },
	{ "Stonehenge", 51.1789, -1.8262 },
	{ "Brandenburg Gate", 52.5163, 13.3777 },
	{ "Colosseum", 41.8902, 12.4922 },
	{ "Leaning Tower of Pisa", 43.7230, 10.3966 },
	{ "Sagrada Familia", 41.4036, 2.1744 },
	{ "Alhambra", 37.1761, -3.5881 },
	{ "Acropolis", 37.9715, 23.7257 },
	{ "Hagia Sophia", 41.0086, 28.9802 },
	{ "Matterhorn", 45.9763, 7.6586 },
	{ "Neuschwanstein Castle", 47.5576, 10.7498 },
	{ "Rijksmuseum", 52.3600, 4.8852 },
	{ "Atomium", 50.8950, 4.3415 },
	{ "Charles Bridge", 50.0865, 14.4114 },
	{ "Pyramids of Giza", 29.9792, 31.1342 },
	{ "Petra", 30.3285, 35.4444 },
	{ "Taj Mahal", 27.1751, 78.0421 },
	{ "Great Wall at Badaling", 40.3540, 116.0143 },
	{ "Forbidden City", 39.9163, 116.3972 },
	{ "Mount Fuji", 35.3606, 138.7274 },
	{ "Angkor Wat", 13.4125, 103.8670 },
	{ "Sydney Opera House", -33.8568, 151.2153 },
	{ "Uluru", -25.3444, 131.0369 },
	{ "Statue of Liberty", 40.6892, -74.0445 },
	{ "Golden Gate Bridge", 37.8199, -122.4783 },
	{ "Grand Canyon", 36.1069, -112.1129 },
	{ "CN Tower", 43.6426, -79.3871 },
	{ "Chichen Itza", 20.6843, -88.5678 },
	{ "Machu Picchu", -13.1631, -72.5450 },
	{ "Christ the Redeemer", -22.9519, -43.2105 },
	{ "Table Mountain", -33.9628, 18.4098 },
};
#define N_LANDMARKS (sizeof(landmarks) / sizeof(landmarks[0]))

static double
haversine_km(double lat1, double lon1, double lat2, double lon2)
{
	double dlat = RADIANS(lat2 - lat1);
	double dlon = RADIANS(lon2 - lon1);
	double a = sin(dlat / 2) * sin(dlat / 2)
	    + cos(RADIANS(lat1)) * cos(RADIANS(lat2)) * sin(dlon / 2)
	        * sin(dlon / 2);

	return (2 * EARTH_RADIUS_KM * atan2(sqrt(a), sqrt(1 - a)));
}

static const landmark *
find(const char *name)
{
	for (size_t i = 0; i < N_LANDMARKS; i++) {
		if (strcmp(landmarks[i].name, name) == 0) {
			return (&landmarks[i]);
		}
	}
	return (NULL);
}

bool
places_distance(const char *from, const char *to, double *km)
{
	const landmark *a = find(from);
	const landmark *b = find(to);

	if (a == NULL || b == NULL) {
		return (false);
	}
	*km = haversine_km(
	    a->latitude, a->longitude, b->latitude, b->longitude);
	return (true);
}

static int
by_distance(const void *a, const void *b)
{
	double x = ((const places_hit *) a)->km;
	double y = ((const places_hit *) b)->km;

	return ((x > y) - (x < y));
}

int
places_nearest(double latitude, double longitude, unsigned limit,
    places_hit hits[PLACES_MAX])
{
	places_hit all[N_LANDMARKS];

	/* Written so that NaN fails too. */
	if (!(latitude >= -90 && latitude <= 90 && longitude >= -180
	        && longitude <= 180)
	    || limit > PLACES_MAX) {
		return (-1);
	}
	for (size_t i = 0; i < N_LANDMARKS; i++) {
		all[i].name = landmarks[i].name;
		all[i].km = haversine_km(latitude, longitude,
		    landmarks[i].latitude, landmarks[i].longitude);
	}
	qsort(all, N_LANDMARKS, sizeof(all[0]), by_distance);
	if (limit == 0) {
		limit = PLACES_DEFAULT;
	}
	if (limit > N_LANDMARKS) {
		limit = N_LANDMARKS;
	}
	memcpy(hits, all, limit * sizeof(hits[0]));
	return ((int) limit);
}
