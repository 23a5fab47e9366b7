/*
 * hoteld: the hotel search service (and, with --testing, the diagnostics
 * service) run by nngrpc_serve(), which gives it the standard flags and
 * NNGRPC_* variables, signals, the drain and the exit codes
 * (include/nngrpc/serve.h). What is hoteld's own is here: five options,
 * registering the services, and building the dataset.
 *
 * hoteld listens at once and answers NOT_SERVING while the dataset is
 * built (generated, or loaded from --data: the load step), then serves it.
 * A --data file that cannot be read or parsed ends the start with exit
 * code 2, out of memory with 1.
 */
#include <stdio.h>

#include <nngrpc/clock.h>
#include <nngrpc/log.h>
#include <nngrpc/nngrpc.h>
#include <nngrpc/serve.h>

#include "engine/hotel.h"
#include "hotel_service.h"
#include "testing_service.h"

typedef struct hoteld {
	bool           testing;   /* serve nngrpc.testing.v1.Testing */
	uint64_t       hotels;    /* the generated dataset's size */
	uint64_t       seed;      /* and its seed */
	const char    *data;      /* a JSON Lines file instead, or NULL */
	const char    *data_dir;  /* where Reload may read, or NULL */
	bool           no_hotels; /* no hotel.v1.HotelSearch */
	hotel_service *svc;       /* NULL with no_hotels */
} hoteld;

/* Methods that never block and take microseconds: run on the receiving
 * thread (see nngrpc_server_set_inline()). Search and Reload stay on the
 * workers: they can take milliseconds or seconds. GetHotel and Stats read
 * the dataset, which under process isolation only the zygote and the
 * workers have: inline in thread mode only. */
static const struct {
	const char *method;
	bool        reads_dataset;
} inline_methods[] = {
	{ "/nngrpc.testing.v1.Testing/Echo", false },
	{ "/nngrpc.testing.v1.Testing/Fail", false },
	{ "/hotel.v1.HotelSearch/GetHotel", true },
	{ "/hotel.v1.HotelSearch/Stats", true },
};

/* Registers the services; the hotel service starts without a dataset. */
static int
setup(nngrpc_server *server, void *arg, char *err, size_t errlen)
{
	hoteld *h = arg;
	int     rv;

	testing_service_allow_crash(h->testing);
	if (h->testing && (rv = testing_service_register(server)) != 0) {
		snprintf(err, errlen,
		    "cannot register the testing service: %s",
		    nng_strerror(rv));
		return (rv);
	}
	if (!h->no_hotels
	    && ((rv = hotel_service_alloc(&h->svc)) != 0
	        || (rv = hotel_service_register(h->svc, server)) != 0
	        || (rv = hotel_service_add_metrics(
	                h->svc, nngrpc_server_metrics(server)))
	            != 0)) {
		snprintf(err, errlen, "cannot register the hotel service: %s",
		    h->svc == NULL ? "out of memory" : nng_strerror(rv));
		return (h->svc == NULL ? NNG_ENOMEM : rv);
	}
	for (size_t i = 0;
	     i < sizeof(inline_methods) / sizeof(inline_methods[0]); i++) {
		if (inline_methods[i].reads_dataset
		    && nngrpc_server_isolated(server)) {
			continue;
		}
		/* NNG_ENOENT: that service is not served this time. */
		rv = nngrpc_server_set_inline(
		    server, inline_methods[i].method, true);
		if (rv != 0 && rv != NNG_ENOENT) {
			snprintf(err, errlen, "%s: %s",
			    inline_methods[i].method, nng_strerror(rv));
			return (rv);
		}
	}
	/* A Reload under process isolation runs in the zygote. */
	rv = nngrpc_server_set_reload(server, "/hotel.v1.HotelSearch/Reload");
	return (rv == NNG_ENOENT ? 0 : rv);
}

/* Builds the hotel dataset and logs how long it took. */
static int
load(nngrpc_server *server, void *arg, char *err, size_t errlen)
{
	hoteld               *h = arg;
	hotel_service_options opts
	    = { .data = h->data, .hotels = h->hotels, .seed = h->seed };
	int64_t start = nngrpc_now_ns();
	int     rv;

	(void) server;
	if (h->svc == NULL) {
		return (0);
	}
	/* Here, where Reload runs (the zygote, under process isolation): a
	 * directory that cannot be opened is a bad flag, exit code 2. */
	if (h->data_dir != NULL
	    && hotel_service_set_data_dir(h->svc, h->data_dir, err, errlen)
	        != 0) {
		return (2);
	}
	if ((rv = hotel_service_load(h->svc, &opts, err, errlen)) != 0) {
		return (rv == HOTEL_ENOMEM ? 1 : 2);
	}
	if (h->data != NULL) {
		nngrpc_log(NNGRPC_LOG_INFO,
		    "hotels: %zu loaded from %s in %lld ms",
		    hotel_service_count(h->svc), h->data,
		    (long long) ((nngrpc_now_ns() - start) / 1000000));
	} else {
		nngrpc_log(NNGRPC_LOG_INFO,
		    "hotels: %zu generated (seed %llu) in %lld ms",
		    hotel_service_count(h->svc), (unsigned long long) h->seed,
		    (long long) ((nngrpc_now_ns() - start) / 1000000));
	}
	return (0);
}

static void
cleanup(void *arg)
{
	hotel_service_close(((hoteld *) arg)->svc);
}

int
main(int argc, char **argv)
{
	hoteld              h = { .hotels = 100000, .seed = 1 };
	const nngrpc_option options[] = {
		{ "testing", "NNGRPC_TESTING", NNGRPC_OPTION_BOOL, &h.testing,
		    0, 0,
		    "also serve nngrpc.testing.v1.Testing (Echo, Sleep, "
		    "Fail, and Crash: fault injection)" },
		{ "hotels", "NNGRPC_HOTELS", NNGRPC_OPTION_UINT64, &h.hotels,
		    0, 100000000, "hotels in the generated dataset (100000)" },
		{ "seed", "NNGRPC_SEED", NNGRPC_OPTION_UINT64, &h.seed, 0,
		    INT64_MAX, "seed of the generated dataset (1)" },
		{ "data", "NNGRPC_DATA", NNGRPC_OPTION_STRING, &h.data, 0, 0,
		    "load hotels from this JSON Lines file instead of "
		    "generating" },
		{ "data-dir", "NNGRPC_DATA_DIR", NNGRPC_OPTION_STRING,
		    &h.data_dir, 0, 0,
		    "Reload reads files from this directory and nowhere else "
		    "(paths that leave it, by .. or a symlink, are refused); "
		    "without it, Reload only generates" },
		{ "no-hotels", "NNGRPC_NO_HOTELS", NNGRPC_OPTION_BOOL,
		    &h.no_hotels, 0, 0, "do not serve hotel.v1.HotelSearch" },
	};
	const nngrpc_serve_spec spec = {
		.name = "hoteld",
		.summary = "Serves hotel.v1.HotelSearch (and more) over NNG "
		           "REQ/REP.",
		.options = options,
		.n_options = sizeof(options) / sizeof(options[0]),
		.setup = setup,
		.load = load,
		.cleanup = cleanup,
		.arg = &h,
	};

	return (nngrpc_serve(&spec, argc, argv));
}
