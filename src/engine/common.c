/*
 * Small shared pieces: error strings, amenity names, distances, the clock,
 * and the err-buffer helper.
 *
 * DESIGN
 * ------
 * Stateless functions over static tables; thread-safe.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "dataset.h"
#include "hotel.h"

const char *
hotel_strerror(int err)
{
	switch (err) {
#define HOTEL_ERRNO_STR(name, num, desc)                                      \
	case HOTEL_##name:                                                    \
		return (desc);
		HOTEL_ERRNO_MAP(HOTEL_ERRNO_STR)
#undef HOTEL_ERRNO_STR
	}
	return ("unknown error");
}

static const char *const amenity_names[HOTEL_AMENITY_COUNT] = {
#define HOTEL_AMENITY_STR(name, bit, str) [bit] = str,
	HOTEL_AMENITY_MAP(HOTEL_AMENITY_STR)
#undef HOTEL_AMENITY_STR
};

const char *
hotel_amenity_name(int a)
{
	if (a < 0 || a >= HOTEL_AMENITY_COUNT) {
		return (NULL);
	}
	return (amenity_names[a]);
}

int
hotel_amenity_from_name(const char *name)
{
	if (name == NULL) {
		return (-1);
	}
	if (strncasecmp(name, "AMENITY_", 8) == 0) {
		name += 8;
	}
	for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
		if (strcasecmp(name, amenity_names[a]) == 0) {
			return (a);
		}
	}
	return (-1);
}

double
hotel_distance_km(double lat1, double lon1, double lat2, double lon2)
{
	const double rad = M_PI / 180.0;
	double       dlat = (lat2 - lat1) * rad;
	double       dlon = (lon2 - lon1) * rad;
	double       s1 = sin(dlat / 2);
	double       s2 = sin(dlon / 2);
	double       a = s1 * s1 + cos(lat1 * rad) * cos(lat2 * rad) * s2 * s2;

	if (a > 1.0) {
		a = 1.0;
	}
	return (2 * HOTEL_EARTH_RADIUS_KM * asin(sqrt(a)));
}

int64_t
hotel_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}

int
hotel__err(int rv, char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		int     n;
		va_start(ap, fmt);
		n = vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t) n >= errlen) {
			/* Cut: never leave half a UTF-8 sequence. */
			size_t len = errlen - 1, i = len;
			while (i > 0
			    && ((unsigned char) err[i - 1] & 0xC0) == 0x80) {
				i--;
			}
			if (i > 0 && (unsigned char) err[i - 1] >= 0xC0) {
				unsigned char lead
				    = (unsigned char) err[i - 1];
				size_t need = lead >= 0xF0 ? 4
				    : lead >= 0xE0         ? 3
				                           : 2;
				if (len - (i - 1) < need) {
					err[i - 1] = '\0';
				}
			}
		}
	}
	return (rv);
}
