/*
 * The hotel.v1.HotelSearch service: maps the proto messages to the hotel
 * engine (src/engine/hotel.h) and back. It owns one hotel_engine, which
 * holds the dataset being served.
 */
#ifndef NNGRPC_SERVICE_HOTEL_SERVICE_H
#define NNGRPC_SERVICE_HOTEL_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "nngrpc.h"

typedef struct hotel_service hotel_service;

/* Where the initial dataset comes from. */
typedef struct hotel_service_options {
	/* JSON Lines file to load (borrowed during open), or NULL to
	 * generate `hotels` hotels from `seed`. */
	const char *data;
	uint64_t    hotels;
	uint64_t    seed;
} hotel_service_options;

/*
 * Builds the initial dataset (this may take seconds: 100000 hotels take
 * about half a second) and opens the service on it. Returns new: *svcp,
 * freed with hotel_service_close(). Returns 0 or an hotel_errno code
 * (HOTEL_EINVAL bad count, HOTEL_EIO unreadable file, HOTEL_EPARSE bad
 * file, HOTEL_ENOMEM), with one line in err saying why.
 */
int hotel_service_open(const hotel_service_options *opts, hotel_service **svcp,
    char *err, size_t errlen);

/* Number of hotels being served. */
size_t hotel_service_count(hotel_service *svc);

/* Registers hotel.v1.HotelSearch on server, before it starts. Borrows svc
 * until the server is closed. Returns 0 or an nng error code. */
int hotel_service_register(hotel_service *svc, nngrpc_server *server);

/* Frees the service and its engine. The server it was registered on must
 * be stopped first (no handler may still run). NULL is a no-op. */
void hotel_service_close(hotel_service *svc);

#endif /* NNGRPC_SERVICE_HOTEL_SERVICE_H */
