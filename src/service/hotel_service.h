/*
 * The hotel.v1.HotelSearch service: maps the proto messages to the hotel
 * engine (src/engine/hotel.h) and back. It owns one hotel_engine, which
 * holds the dataset being served.
 */
#ifndef NNGRPC_SERVICE_HOTEL_SERVICE_H
#define NNGRPC_SERVICE_HOTEL_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <nngrpc/nngrpc.h>

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

/* Allocates a service with no dataset yet: register it, start the
 * server with it NOT_SERVING, then hotel_service_load(). Handlers must
 * not run before the load (the server's serving state keeps them out).
 * Returns new: *svcp, freed with hotel_service_close(). 0 or
 * HOTEL_ENOMEM. */
int hotel_service_alloc(hotel_service **svcp);

/* Builds the dataset opts describes and serves it (swapping out any
 * previous one). Errors as hotel_service_open(). Not thread-safe against
 * itself. */
int hotel_service_load(hotel_service *svc, const hotel_service_options *opts,
    char *err, size_t errlen);

/* Confines Reload to files under dir (data_dir.h), opened now, in the
 * process that runs Reload. Without it, a Reload that names a file is
 * refused with PERMISSION_DENIED. Returns HOTEL_OK, or HOTEL_EIO with one line
 * in err (the directory cannot be opened). Before the dataset is loaded. */
int hotel_service_set_data_dir(
    hotel_service *svc, const char *dir, char *err, size_t errlen);

/* Adds the dataset's gauges (hotels, memory) and the reload counter to the
 * server's metrics. Before the server starts. 0 or an nng error. */
int hotel_service_add_metrics(
    hotel_service *svc, struct nngrpc_metrics *metrics);

/* Number of hotels being served (0 before the load). */
size_t hotel_service_count(hotel_service *svc);

/* Registers hotel.v1.HotelSearch on server, before it starts. Borrows svc
 * until the server is closed. Returns 0 or an nng error code. */
int hotel_service_register(hotel_service *svc, nngrpc_server *server);

/* Frees the service and its engine. The server it was registered on must
 * be stopped first (no handler may still run). NULL is a no-op. */
void hotel_service_close(hotel_service *svc);

#endif /* NNGRPC_SERVICE_HOTEL_SERVICE_H */
