/*
 * hotel.v1.HotelSearch handlers: proto messages to hotel engine calls and
 * back.
 *
 * DESIGN. Handlers run on the server's worker threads, any number at once.
 * The engine is thread-safe; the only state here is the engine pointer
 * (set at open, read-only after) and reload_mtx, which lets one Reload
 * build a dataset at a time so two concurrent reloads never hold three
 * datasets in memory.
 *
 * Ownership in a handler. Every handler that answers with hotel data first
 * acquires the current dataset and at once registers hotel_dataset_release
 * with nngrpc_call_defer(): the reply's strings (names, cities,
 * descriptions) then point straight into the dataset, with no copy, and
 * stay valid until the runtime has packed the reply, after which the defer
 * drops the reference. A Reload that swaps datasets meanwhile does not
 * disturb the call: the old dataset is freed when its last reader
 * releases it. Message structs and arrays come from call memory (the
 * generated <type>__new() and <type>__new_<field>() helpers), freed with
 * the call. Engine results (hotel_result, suggestions) are copied into
 * those structs and freed before the handler returns, so nothing else
 * outlives it. Stats and Reload copy their few strings into call memory
 * and keep no reference.
 *
 * Validation happens here, before the engine runs, with messages that
 * name the field as the proto spells it; the engine's own messages (page
 * tokens, query words, file lines) are passed through.
 */
#include "hotel_service.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nngrpc/clock.h>
#include <nngrpc/log.h>
#include <nngrpc/metrics.h>

#include "data_dir.h"
#include "engine/hotel.h"
#include "hotel/v1/hotel.nngrpc.h"

#define PAGE_SIZE_DEFAULT 10
#define PAGE_SIZE_MAX     100
#define TOP_CITIES_MAX    100
#define SUGGEST_DEFAULT   10
#define SUGGEST_MAX       50
#define RELOAD_COUNT_MAX  10000000
#define ECHO_MAX          64 /* bytes of a caller's string in a message */
#define ENGINE_ERR_MAX    256

struct hotel_service {
	/* NULL until hotel_service_load(); atomic because the server may
	 * already run (health, metrics) while main loads the dataset. */
	hotel_engine *_Atomic s_engine;
	atomic_uint_fast64_t  s_reloads;    /* successful Reloads */
	pthread_mutex_t       s_reload_mtx; /* held while a Reload builds */
	data_dir             *s_data; /* where Reload reads; NULL: nowhere */
};

/* The engine's deadline convention is the runtime's. */
_Static_assert(HOTEL_DEADLINE_NONE == NNGRPC_NO_DEADLINE,
    "engine and runtime disagree on 'no deadline'");

/* ---- helpers ------------------------------------------------------------ */

/* Copies at most ECHO_MAX bytes of a caller's string into buf for an error
 * message: control bytes become '?', and a cut never splits a UTF-8
 * sequence (the message is a proto string, which must be valid UTF-8). */
static const char *
echo_arg(char *buf, size_t len, const char *s)
{
	size_t n = strlen(s);
	size_t max = len - 4 < ECHO_MAX ? len - 4 : ECHO_MAX;
	bool   cut = false;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80) {
			n--;
		}
		cut = true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) s[i];
		buf[i] = (c < 0x20 || c == 0x7F) ? '?' : (char) c;
	}
	if (cut) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return (buf);
}

/* Drops an incomplete UTF-8 sequence from the end of s, left there when the
 * engine cut a long message (a path, say) to fit its buffer: the status
 * message must be valid UTF-8 or a client cannot decode the reply. */
static void
trim_utf8(char *s)
{
	size_t n = strlen(s);
	size_t i = n;
	size_t need;

	while (
	    i > 0 && n - i < 4 && ((unsigned char) s[i - 1] & 0xC0) == 0x80) {
		i--;
	}
	if (i == 0 || ((unsigned char) s[i - 1] & 0x80) == 0) {
		return; /* ASCII last, or only continuation bytes: leave it */
	}
	i--; /* s[i] leads the last sequence */
	need = ((unsigned char) s[i] & 0xE0) == 0xC0 ? 2
	    : ((unsigned char) s[i] & 0xF0) == 0xE0  ? 3
	                                             : 4;
	if (n - i < need) {
		s[i] = '\0';
	}
}

/* Maps an engine error to a status, with the engine's message (or the
 * error's description when it gave none). */
static nngrpc_status
engine_error(nngrpc_call *call, int rv, char *msg)
{
	nngrpc_status st;

	switch (rv) {
	case HOTEL_EINVAL:
	case HOTEL_EPARSE:
		st = NNGRPC_INVALID_ARGUMENT;
		break;
	case HOTEL_EDEADLINE:
		st = NNGRPC_DEADLINE_EXCEEDED;
		break;
	case HOTEL_ECANCELED:
		st = NNGRPC_CANCELLED;
		break;
	case HOTEL_ENOMEM:
		st = NNGRPC_RESOURCE_EXHAUSTED;
		break;
	case HOTEL_ENOTFOUND:
		st = NNGRPC_NOT_FOUND;
		break;
	case HOTEL_EIO:
		st = NNGRPC_FAILED_PRECONDITION;
		break;
	default:
		st = NNGRPC_INTERNAL;
		break;
	}
	if (msg != NULL) {
		trim_utf8(msg);
	}
	if (msg == NULL || msg[0] == '\0') {
		msg = (char *) hotel_strerror(rv);
	}
	if (strncmp(msg, "text:", 5) == 0) {
		/* The engine's name for SearchRequest.query. */
		return (nngrpc_call_error(call, st, "query:%s", msg + 5));
	}
	return (nngrpc_call_error(call, st, "%s", msg));
}

/* "cannot read PATH: why" from the engine's HOTEL_EIO message, which may or
 * may not start with the path. */
static const char *
io_message(char *buf, size_t len, const char *path, char *msg)
{
	const char *why = msg;
	size_t      n = strlen(path);

	trim_utf8(msg);
	if (why[0] == '\0') {
		why = hotel_strerror(HOTEL_EIO);
	}
	if (strncmp(why, path, n) == 0 && why[n] == ':') {
		snprintf(buf, len, "cannot read %s", why);
	} else {
		snprintf(buf, len, "cannot read %s: %s", path, why);
	}
	trim_utf8(buf);
	return (buf);
}

/* The engine's cancel function (hotel.h, "stopping"): the call's. Thread
 * safe, as the engine needs during a build. */
static bool
call_cancelled(void *arg)
{
	return (nngrpc_call_cancelled(arg));
}

/* What stops the engine's work for a call: its deadline, or the caller
 * giving up (its connection closed, or a cancel by request id). */
static hotel_stop
call_stop(nngrpc_call *call)
{
	hotel_stop stop = {
		.deadline_ns = nngrpc_call_deadline(call),
		.cancelled = call_cancelled,
		.cancel_arg = call,
	};

	return (stop);
}

static void
release_dataset(void *arg)
{
	hotel_dataset_release(arg);
}

/* Acquires the current dataset for the rest of the call: it is released
 * after the reply is packed. NULL when out of memory (status set). */
static hotel_dataset *
acquire_for_call(nngrpc_call *call, hotel_service *svc)
{
	hotel_dataset *ds = hotel_engine_acquire(svc->s_engine);

	if (nngrpc_call_defer(call, release_dataset, ds) != 0) {
		/* The defer already released it. */
		nngrpc_call_error(
		    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory");
		return (NULL);
	}
	return (ds);
}

static nngrpc_status
out_of_memory(nngrpc_call *call)
{
	return (nngrpc_call_error(
	    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory"));
}

static unsigned
popcount32(uint32_t v)
{
	return ((unsigned) __builtin_popcount(v));
}

/* Fills a Hotel message from an engine hotel. Strings borrow from the
 * dataset and amenity names are static; only the amenities array is new
 * (call memory). */
static nngrpc_status
fill_hotel(nngrpc_call *call, Hotel__V1__Hotel *m, const hotel *h)
{
	size_t n = 0;

	m->id = h->id;
	m->name = (char *) h->name;
	m->city = (char *) h->city;
	m->country = (char *) h->country;
	m->description = (char *) (h->description ? h->description : "");
	m->latitude = h->latitude;
	m->longitude = h->longitude;
	m->stars = (uint32_t) h->stars;
	m->price_cents = h->price_cents;
	m->rating = h->rating;
	m->review_count = h->review_count;
	if (hotel__v1__hotel__new_amenities(call, m, popcount32(h->amenities))
	    == NULL) {
		return (out_of_memory(call));
	}
	for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
		if (h->amenities & HOTEL_AMENITY_BIT(a)) {
			m->amenities[n++] = (char *) hotel_amenity_name(a);
		}
	}
	return (NNGRPC_OK);
}

/* Stats' source in the contract's form, "generated:COUNT:SEED" or
 * "file:PATH", from the engine's ("generate count=N seed=S" or
 * "jsonl PATH"); anything else is passed as it is. Returns arena memory. */
static char *
source_string(nngrpc_call *call, const char *src)
{
	unsigned long long count, seed;
	char              *out;
	size_t             len;
	int                used = 0;

	if (src == NULL) {
		return (nngrpc_call_strdup(call, ""));
	}
	if (sscanf(
	        src, "generate count=%llu seed=%llu%n", &count, &seed, &used)
	        == 2
	    && src[used] == '\0') {
		len = 64;
		if ((out = nngrpc_call_alloc(call, len)) != NULL) {
			snprintf(out, len, "generated:%llu:%llu", count, seed);
		}
		return (out);
	}
	if (strncmp(src, "jsonl ", 6) == 0) {
		len = strlen(src + 6) + sizeof("file:");
		if ((out = nngrpc_call_alloc(call, len)) != NULL) {
			snprintf(out, len, "file:%s", src + 6);
		}
		return (out);
	}
	return (nngrpc_call_strdup(call, src));
}

/* Fills a StatsResponse from ds, copying its strings into the arena. */
static nngrpc_status
fill_stats(
    nngrpc_call *call, const hotel_dataset *ds, Hotel__V1__StatsResponse *resp)
{
	hotel_stats st;

	hotel_dataset_stats(ds, &st);
	resp->hotel_count = st.hotel_count;
	resp->load_ms = st.build_ms;
	resp->loaded_at_unix_ms = st.loaded_at_unix_ms;
	resp->index_bytes = st.memory_bytes;
	resp->dataset_id = nngrpc_call_strdup(call, st.dataset_id);
	resp->source = source_string(call, st.source);
	if (resp->dataset_id == NULL || resp->source == NULL) {
		return (out_of_memory(call));
	}
	return (NNGRPC_OK);
}

/* ---- Search ---------------------------------------------------------------
 */

/* SearchRequest.page_size (absent: the default). */
static nngrpc_status
search_page_size(
    nngrpc_call *call, const Hotel__V1__SearchRequest *req, hotel_query *q)
{
	if (req->page_size_present_case
	    != HOTEL__V1__SEARCH_REQUEST__PAGE_SIZE_PRESENT_PAGE_SIZE) {
		return (NNGRPC_OK);
	}
	if (req->page_size < 1 || req->page_size > PAGE_SIZE_MAX) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "page_size: must be 1..%d, got %" PRIu32, PAGE_SIZE_MAX,
		    req->page_size));
	}
	q->page_size = req->page_size;
	return (NNGRPC_OK);
}

/* SearchRequest.geo (NULL: no geo filter). Written so that NaN fails
 * every check. */
static nngrpc_status
search_geo(nngrpc_call *call, const Hotel__V1__GeoFilter *g, hotel_query *q)
{
	if (g == NULL) {
		return (NNGRPC_OK);
	}
	if (!(g->latitude >= -90.0 && g->latitude <= 90.0)) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "geo.latitude: must be -90..90, got %g", g->latitude));
	}
	if (!(g->longitude >= -180.0 && g->longitude <= 180.0)) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "geo.longitude: must be -180..180, got %g", g->longitude));
	}
	if (!(g->radius_km > 0.0 && isfinite(g->radius_km))) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "geo.radius_km: must be a finite number > 0, got %g",
		    g->radius_km));
	}
	q->has_geo = true;
	q->lat = g->latitude;
	q->lon = g->longitude;
	q->radius_km = g->radius_km;
	return (NNGRPC_OK);
}

/* The filters: min_stars, max_price_cents, amenities. */
static nngrpc_status
search_filters(
    nngrpc_call *call, const Hotel__V1__SearchRequest *req, hotel_query *q)
{
	char echo[ECHO_MAX + 4];

	if (req->min_stars > 5) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "min_stars: must be 0..5, got %" PRIu32, req->min_stars));
	}
	q->min_stars = (int) req->min_stars;
	if (req->max_price_cents < 0) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "max_price_cents: must be >= 0, got %" PRId64,
		    req->max_price_cents));
	}
	q->max_price_cents = req->max_price_cents;
	for (size_t i = 0; i < req->n_amenities; i++) {
		int a = hotel_amenity_from_name(req->amenities[i]);
		if (a < 0) {
			return (nngrpc_call_error(call,
			    NNGRPC_INVALID_ARGUMENT,
			    "amenities: unknown amenity '%s'",
			    echo_arg(echo, sizeof(echo), req->amenities[i])));
		}
		q->amenities_all |= HOTEL_AMENITY_BIT(a);
	}
	return (NNGRPC_OK);
}

/* SearchRequest.sort; SORT_DISTANCE needs geo. */
static nngrpc_status
search_sort(
    nngrpc_call *call, const Hotel__V1__SearchRequest *req, hotel_query *q)
{
	switch (req->sort) {
	case HOTEL__V1__SORT_ORDER__SORT_RELEVANCE:
		q->sort = HOTEL_SORT_RELEVANCE;
		return (NNGRPC_OK);
	case HOTEL__V1__SORT_ORDER__SORT_RATING:
		q->sort = HOTEL_SORT_RATING;
		return (NNGRPC_OK);
	case HOTEL__V1__SORT_ORDER__SORT_PRICE:
		q->sort = HOTEL_SORT_PRICE;
		return (NNGRPC_OK);
	case HOTEL__V1__SORT_ORDER__SORT_DISTANCE:
		if (req->geo == NULL) {
			return (
			    nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
			        "sort: SORT_DISTANCE needs geo"));
		}
		q->sort = HOTEL_SORT_DISTANCE;
		return (NNGRPC_OK);
	default:
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "sort: unknown value %d", (int) req->sort));
	}
}

/* Checks the request and fills *q. Returns OK or INVALID_ARGUMENT naming
 * the field. q borrows from req. */
static nngrpc_status
search_query(
    nngrpc_call *call, const Hotel__V1__SearchRequest *req, hotel_query *q)
{
	nngrpc_status st;

	memset(q, 0, sizeof(*q));
	q->text = req->query;
	q->page_size = PAGE_SIZE_DEFAULT;
	/* In the order of the fields, so the first bad one is named. */
	if ((st = search_page_size(call, req, q)) != NNGRPC_OK
	    || (st = search_geo(call, req->geo, q)) != NNGRPC_OK
	    || (st = search_filters(call, req, q)) != NNGRPC_OK
	    || (st = search_sort(call, req, q)) != NNGRPC_OK) {
		return (st);
	}
	if (req->top_cities > TOP_CITIES_MAX) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "top_cities: must be 0..%d, got %" PRIu32, TOP_CITIES_MAX,
		    req->top_cities));
	}
	q->page_token = req->page_token;
	q->facets = req->facets;
	q->top_cities = req->top_cities;
	q->stop = call_stop(call);
	return (NNGRPC_OK);
}

/* Copies the page of hits into call memory. */
static nngrpc_status
search_hits(
    nngrpc_call *call, const hotel_result *r, Hotel__V1__SearchResponse *resp)
{
	Hotel__V1__SearchHit **hits
	    = hotel__v1__search_response__new_hits(call, resp, r->n_hits);
	nngrpc_status st = NNGRPC_OK;

	if (hits == NULL) {
		return (out_of_memory(call));
	}
	for (size_t i = 0; i < r->n_hits && st == NNGRPC_OK; i++) {
		hits[i]->score = r->hits[i].score;
		hits[i]->distance_km = r->hits[i].distance_km;
		if ((hits[i]->hotel = hotel__v1__hotel__new(call)) == NULL) {
			return (out_of_memory(call));
		}
		st = fill_hotel(call, hits[i]->hotel, r->hits[i].hotel);
	}
	return (st);
}

/* Copies the facets into call memory. */
static nngrpc_status
search_facets(
    nngrpc_call *call, const hotel_result *r, Hotel__V1__SearchResponse *resp)
{
	Hotel__V1__Facets *f = hotel__v1__facets__new(call);

	if (f == NULL || hotel__v1__facets__new_stars(call, f, 5) == NULL
	    || hotel__v1__facets__new_cities(call, f, r->n_cities) == NULL) {
		return (out_of_memory(call));
	}
	for (int s = 1; s <= 5; s++) {
		f->stars[s - 1]->stars = (uint32_t) s;
		f->stars[s - 1]->count = r->stars_facet[s];
	}
	for (size_t i = 0; i < r->n_cities; i++) {
		f->cities[i]->city = (char *) r->cities[i].city;
		f->cities[i]->country = (char *) r->cities[i].country;
		f->cities[i]->count = r->cities[i].count;
	}
	resp->facets = f;
	return (NNGRPC_OK);
}

static nngrpc_status
search(nngrpc_call *call, const Hotel__V1__SearchRequest *req,
    Hotel__V1__SearchResponse *resp)
{
	hotel_service *svc = nngrpc_call_user(call);
	hotel_dataset *ds;
	hotel_result  *r;
	hotel_query    q;
	hotel_stats    st;
	nngrpc_status  status;
	char           err[ENGINE_ERR_MAX] = "";
	int            rv;

	if ((status = search_query(call, req, &q)) != NNGRPC_OK) {
		return (status);
	}
	if ((ds = acquire_for_call(call, svc)) == NULL) {
		return (NNGRPC_RESOURCE_EXHAUSTED);
	}
	if ((rv = hotel_search(ds, &q, &r, err, sizeof(err))) != HOTEL_OK) {
		return (engine_error(call, rv, err));
	}
	/* The result's strings point into ds, kept until the call ends;
	 * everything else is copied, so the result goes now. */
	hotel_dataset_stats(ds, &st);
	resp->total = r->total;
	resp->dataset_id = nngrpc_call_strdup(call, st.dataset_id);
	resp->next_page_token = nngrpc_call_strdup(call, r->next_page_token);
	if (resp->dataset_id == NULL || resp->next_page_token == NULL) {
		status = out_of_memory(call);
	} else if ((status = search_hits(call, r, resp)) == NNGRPC_OK
	    && r->has_facets) {
		status = search_facets(call, r, resp);
	}
	hotel_result_free(r);
	return (status);
}

/* ---- GetHotel -------------------------------------------------------------
 */

static nngrpc_status
get_hotel(nngrpc_call *call, const Hotel__V1__GetHotelRequest *req,
    Hotel__V1__Hotel *resp)
{
	hotel_service *svc = nngrpc_call_user(call);
	hotel_dataset *ds;
	const hotel   *h;

	if (req->id == 0) {
		return (nngrpc_call_error(
		    call, NNGRPC_INVALID_ARGUMENT, "id: must be > 0"));
	}
	if ((ds = acquire_for_call(call, svc)) == NULL) {
		return (NNGRPC_RESOURCE_EXHAUSTED);
	}
	if (hotel_get(ds, req->id, &h) != HOTEL_OK) {
		return (nngrpc_call_error(call, NNGRPC_NOT_FOUND,
		    "hotel %" PRIu64 " not found", req->id));
	}
	return (fill_hotel(call, resp, h));
}

/* ---- Suggest --------------------------------------------------------------
 */

static nngrpc_status
suggest(nngrpc_call *call, const Hotel__V1__SuggestRequest *req,
    Hotel__V1__SuggestResponse *resp)
{
	hotel_service          *svc = nngrpc_call_user(call);
	hotel_dataset          *ds;
	hotel_suggestion       *s;
	Hotel__V1__Suggestion **out;
	hotel_stop              stop;
	size_t                  n, limit = req->limit;
	char                    err[ENGINE_ERR_MAX] = "";
	int                     rv;

	if (req->prefix[0] == '\0') {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "prefix: must not be empty"));
	}
	if (limit == 0) {
		limit = SUGGEST_DEFAULT;
	} else if (limit > SUGGEST_MAX) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "limit: must be 0..%d, got %zu", SUGGEST_MAX, limit));
	}
	if ((ds = acquire_for_call(call, svc)) == NULL) {
		return (NNGRPC_RESOURCE_EXHAUSTED);
	}
	stop = call_stop(call);
	rv = hotel_suggest(
	    ds, req->prefix, limit, &stop, &s, &n, err, sizeof(err));
	if (rv != HOTEL_OK) {
		return (engine_error(call, rv, err));
	}
	if ((out = hotel__v1__suggest_response__new_suggestions(call, resp, n))
	    == NULL) {
		hotel_suggestions_free(s);
		return (out_of_memory(call));
	}
	for (size_t i = 0; i < n; i++) {
		out[i]->kind = s[i].kind == HOTEL_SUGGEST_HOTEL
		    ? HOTEL__V1__SUGGESTION__KIND__KIND_HOTEL
		    : HOTEL__V1__SUGGESTION__KIND__KIND_CITY;
		out[i]->text = (char *) s[i].text;
		out[i]->city = (char *) s[i].city;
		out[i]->country = (char *) s[i].country;
		out[i]->hotel_id = s[i].hotel_id;
		out[i]->review_count = s[i].weight;
	}
	hotel_suggestions_free(s);
	return (NNGRPC_OK);
}

/* ---- Stats and Reload -----------------------------------------------------
 */

static nngrpc_status
stats(nngrpc_call *call, const Hotel__V1__StatsRequest *req,
    Hotel__V1__StatsResponse *resp)
{
	hotel_service *svc = nngrpc_call_user(call);
	hotel_dataset *ds = hotel_engine_acquire(svc->s_engine);
	nngrpc_status  status;

	(void) req;
	status = fill_stats(call, ds, resp);
	hotel_dataset_release(ds);
	return (status);
}

/* Checks a Reload's source and describes it in what (for the logs). */
static nngrpc_status
reload_source(nngrpc_call *call, const Hotel__V1__ReloadRequest *req,
    char *what, size_t len)
{
	char echo[ECHO_MAX + 4];

	switch (req->source_case) {
	case HOTEL__V1__RELOAD_REQUEST__SOURCE_PATH:
		if (req->path[0] == '\0') {
			return (
			    nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
			        "path: must not be empty"));
		}
		snprintf(what, len, "file %s",
		    echo_arg(echo, sizeof(echo), req->path));
		return (NNGRPC_OK);
	case HOTEL__V1__RELOAD_REQUEST__SOURCE_GENERATE:
		if (req->generate->count < 1
		    || req->generate->count > RELOAD_COUNT_MAX) {
			return (
			    nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
			        "generate.count: must be 1..%d, got %" PRIu64,
			        RELOAD_COUNT_MAX, req->generate->count));
		}
		snprintf(what, len, "%" PRIu64 " generated (seed %" PRIu64 ")",
		    req->generate->count, req->generate->seed);
		return (NNGRPC_OK);
	default:
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "source: set path or generate"));
	}
}

/* Opens a Reload's file, only under --data-dir (data_dir.h), only a
 * regular file: a device (/dev/zero) or a FIFO could feed one endless
 * line. Returns OK with *fp (the caller fcloses it), or the call's error:
 * PERMISSION_DENIED for a path outside the directory (or no directory),
 * FAILED_PRECONDITION for a file that cannot be read. */
static nngrpc_status
reload_open(
    nngrpc_call *call, const hotel_service *svc, const char *path, FILE **fp)
{
	char        echo[ECHO_MAX + 4], why[ENGINE_ERR_MAX + 64];
	char        msg[ENGINE_ERR_MAX];
	struct stat st;
	int         fd, e;

	if (svc->s_data == NULL) {
		return (nngrpc_call_error(call, NNGRPC_PERMISSION_DENIED,
		    "path: this server reads no file for Reload (start it "
		    "with --data-dir)"));
	}
	if ((fd = data_dir_open_file(svc->s_data, path)) < 0) {
		e = errno;
		echo_arg(echo, sizeof(echo), path);
		if (e == EXDEV) {
			return (nngrpc_call_error(call,
			    NNGRPC_PERMISSION_DENIED,
			    "path: %s is outside the data directory", echo));
		}
		snprintf(msg, sizeof(msg), "%s", strerror(e));
		return (nngrpc_call_error(call, NNGRPC_FAILED_PRECONDITION,
		    "path: %s", io_message(why, sizeof(why), path, msg)));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
	    || fcntl(fd, F_SETFL, 0) != 0 || (*fp = fdopen(fd, "r")) == NULL) {
		close(fd);
		snprintf(msg, sizeof(msg), "not a regular file");
		return (nngrpc_call_error(call, NNGRPC_FAILED_PRECONDITION,
		    "path: %s", io_message(why, sizeof(why), path, msg)));
	}
	return (NNGRPC_OK);
}

/* Builds the new dataset from f (a Reload's file, closed here) or the
 * generator, and swaps it in, one build at a time; stop (the call's
 * deadline and cancellation) may end the build, and then the old dataset
 * stays. Returns an engine code; on success *dsp is the dataset swapped
 * in, acquired under the lock, so its stats are this call's. */
static int
reload_build(hotel_service *svc, const Hotel__V1__ReloadRequest *req, FILE *f,
    const hotel_stop *stop, hotel_dataset **dsp, char *err, size_t errlen)
{
	hotel_dataset *ds;
	int            rv;

	pthread_mutex_lock(&svc->s_reload_mtx);
	if (f != NULL) {
		rv = hotel_dataset_read_jsonl(
		    f, req->path, stop, &ds, err, errlen);
		if (rv == HOTEL_OK) {
			hotel_engine_swap(svc->s_engine, ds);
		}
	} else {
		rv = hotel_engine_reload_generate(svc->s_engine,
		    (size_t) req->generate->count, req->generate->seed, stop);
	}
	if (rv == HOTEL_OK) {
		*dsp = hotel_engine_acquire(svc->s_engine);
		atomic_fetch_add(&svc->s_reloads, 1);
	}
	pthread_mutex_unlock(&svc->s_reload_mtx);
	if (f != NULL) {
		fclose(f);
	}
	return (rv);
}

/* The status of a failed reload; the old dataset is still served. */
static nngrpc_status
reload_failed(nngrpc_call *call, const Hotel__V1__ReloadRequest *req,
    const char *what, int rv, char *err)
{
	char why[ENGINE_ERR_MAX + 64];

	nngrpc_log(NNGRPC_LOG_WARN,
	    "reload: %s failed, still serving the old dataset: %s", what,
	    err[0] ? err : hotel_strerror(rv));
	if (rv == HOTEL_EIO) {
		/* Name the field, as every other message does. */
		return (nngrpc_call_error(call, NNGRPC_FAILED_PRECONDITION,
		    "path: %s", io_message(why, sizeof(why), req->path, err)));
	}
	return (engine_error(call, rv, err));
}

static nngrpc_status
reload(nngrpc_call *call, const Hotel__V1__ReloadRequest *req,
    Hotel__V1__ReloadResponse *resp)
{
	hotel_service            *svc = nngrpc_call_user(call);
	Hotel__V1__StatsResponse *st;
	hotel_dataset            *ds = NULL;
	hotel_stop                stop = call_stop(call);
	FILE                     *f = NULL;
	nngrpc_status             status;
	char                      err[ENGINE_ERR_MAX] = "";
	char                      what[ENGINE_ERR_MAX];
	int64_t                   start = nngrpc_now_ns();
	int                       rv;

	if ((status = reload_source(call, req, what, sizeof(what)))
	    != NNGRPC_OK) {
		return (status);
	}
	if ((st = hotel__v1__stats_response__new(call)) == NULL) {
		return (out_of_memory(call));
	}
	if (req->source_case == HOTEL__V1__RELOAD_REQUEST__SOURCE_PATH
	    && (status = reload_open(call, svc, req->path, &f)) != NNGRPC_OK) {
		nngrpc_log(NNGRPC_LOG_WARN, "reload: %s refused: %s", what,
		    nngrpc_call_message(call));
		return (status);
	}
	if ((rv = reload_build(svc, req, f, &stop, &ds, err, sizeof(err)))
	    != HOTEL_OK) {
		return (reload_failed(call, req, what, rv, err));
	}
	status = fill_stats(call, ds, st);
	hotel_dataset_release(ds);
	if (status == NNGRPC_OK) {
		resp->stats = st;
		nngrpc_log(NNGRPC_LOG_INFO,
		    "reload: %s: %" PRIu64 " hotels in %lld ms, dataset %s",
		    what, st->hotel_count,
		    (long long) ((nngrpc_now_ns() - start) / 1000000),
		    st->dataset_id);
	}
	return (status);
}

/* ---- service ---------------------------------------------------------------
 */

int
hotel_service_set_data_dir(
    hotel_service *svc, const char *dir, char *err, size_t errlen)
{
	data_dir *d;

	if (data_dir_open(dir, &d, err, errlen) != 0) {
		return (HOTEL_EIO);
	}
	data_dir_close(svc->s_data);
	svc->s_data = d;
	return (HOTEL_OK);
}

int
hotel_service_alloc(hotel_service **svcp)
{
	hotel_service *svc = calloc(1, sizeof(*svc));

	if (svc == NULL) {
		return (HOTEL_ENOMEM);
	}
	pthread_mutex_init(&svc->s_reload_mtx, NULL);
	atomic_init(&svc->s_reloads, 0);
	*svcp = svc;
	return (0);
}

int
hotel_service_open(const hotel_service_options *opts, hotel_service **svcp,
    char *err, size_t errlen)
{
	hotel_service *svc;
	int            rv;

	if ((rv = hotel_service_alloc(&svc)) != 0) {
		snprintf(err, errlen, "out of memory");
		return (rv);
	}
	if ((rv = hotel_service_load(svc, opts, err, errlen)) != 0) {
		hotel_service_close(svc);
		return (rv);
	}
	*svcp = svc;
	return (0);
}

int
hotel_service_load(hotel_service *svc, const hotel_service_options *opts,
    char *err, size_t errlen)
{
	hotel_dataset *ds = NULL;
	hotel_engine  *engine;
	char           msg[ENGINE_ERR_MAX] = "";
	int            rv;

	if (opts->data != NULL) {
		rv = hotel_dataset_load_jsonl(
		    opts->data, NULL, &ds, msg, sizeof(msg));
		if (rv == HOTEL_EIO) {
			char why[ENGINE_ERR_MAX + 64];
			snprintf(err, errlen, "--data: %s",
			    io_message(why, sizeof(why), opts->data, msg));
			return (rv);
		} else if (rv != HOTEL_OK) {
			snprintf(err, errlen, "--data %s: %s", opts->data,
			    msg[0] ? msg : hotel_strerror(rv));
			return (rv);
		}
	} else {
		if (opts->hotels < 1 || opts->hotels > HOTEL_GENERATE_MAX) {
			snprintf(err, errlen,
			    "--hotels: must be 1..%d, got %" PRIu64,
			    HOTEL_GENERATE_MAX, opts->hotels);
			return (HOTEL_EINVAL);
		}
		rv = hotel_dataset_generate(
		    (size_t) opts->hotels, opts->seed, NULL, &ds);
		if (rv != HOTEL_OK) {
			snprintf(err, errlen,
			    "cannot generate %" PRIu64 " hotels: %s",
			    opts->hotels, hotel_strerror(rv));
			return (rv);
		}
	}
	if (svc->s_engine != NULL) {
		hotel_engine_swap(svc->s_engine, ds);
		return (0);
	}
	if ((rv = hotel_engine_open(ds, &engine)) != HOTEL_OK) {
		hotel_dataset_release(ds);
		snprintf(err, errlen, "cannot open the engine: %s",
		    hotel_strerror(rv));
		return (rv);
	}
	svc->s_engine = engine; /* published: handlers may now use it */
	return (0);
}

size_t
hotel_service_count(hotel_service *svc)
{
	hotel_engine *engine = svc->s_engine;
	if (engine == NULL) {
		return (0);
	}
	hotel_dataset *ds = hotel_engine_acquire(engine);
	size_t         n = hotel_dataset_count(ds);

	hotel_dataset_release(ds);
	return (n);
}

int
hotel_service_register(hotel_service *svc, nngrpc_server *server)
{
	static const Hotel__V1__HotelSearch_Impl impl = {
		.search = search,
		.get_hotel = get_hotel,
		.suggest = suggest,
		.stats = stats,
		.reload = reload,
	};
	return (hotel__v1__hotel_search__register(server, &impl, svc));
}

static double
gauge_hotels(void *arg)
{
	return ((double) hotel_service_count(arg));
}

static double
gauge_index_bytes(void *arg)
{
	hotel_service *svc = arg;
	hotel_engine  *engine = svc->s_engine;
	hotel_stats    st;

	if (engine == NULL) {
		return (0);
	}
	hotel_dataset *ds = hotel_engine_acquire(engine);
	hotel_dataset_stats(ds, &st);
	hotel_dataset_release(ds);
	return ((double) st.memory_bytes);
}

static double
counter_reloads(void *arg)
{
	return ((double) atomic_load(&((hotel_service *) arg)->s_reloads));
}

int
hotel_service_add_metrics(hotel_service *svc, nngrpc_metrics *metrics)
{
	int rv;

	if ((rv = nngrpc_metrics_add_gauge(metrics, "hotel_dataset_hotels",
	         "Hotels in the dataset being served.", gauge_hotels, svc))
	        != 0
	    || (rv = nngrpc_metrics_add_gauge(metrics,
	            "hotel_dataset_memory_bytes",
	            "Bytes held by the dataset and its index.",
	            gauge_index_bytes, svc))
	        != 0
	    || (rv = nngrpc_metrics_add_counter_fn(metrics,
	            "hotel_dataset_reloads_total", "Successful Reload calls.",
	            counter_reloads, svc))
	        != 0) {
		return (rv);
	}
	return (0);
}

void
hotel_service_close(hotel_service *svc)
{
	if (svc == NULL) {
		return;
	}
	if (svc->s_engine != NULL) {
		hotel_engine_close(svc->s_engine);
	}
	pthread_mutex_destroy(&svc->s_reload_mtx);
	data_dir_close(svc->s_data);
	free(svc);
}
