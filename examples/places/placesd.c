/* placesd: the places.v1.Places service over the engine in engine/places.h. */
#include "engine/places.h"
#include "places/v1/places.nngrpc.h"

static nngrpc_status
distance(nngrpc_call *call, const Places__V1__DistanceRequest *req,
    Places__V1__DistanceResponse *resp)
{
	if (places_distance(req->origin, req->destination, &resp->km)) {
		return (NNGRPC_OK);
	}
	return (nngrpc_call_error(call, NNGRPC_NOT_FOUND,
	    "no landmark \"%s\" or \"%s\"", req->origin, req->destination));
}

static nngrpc_status
nearest(nngrpc_call *call, const Places__V1__NearestRequest *req,
    Places__V1__NearestResponse *resp)
{
	places_hit h[PLACES_MAX];
	int n = places_nearest(req->latitude, req->longitude, req->limit, h);

	if (n < 0) {
		return (nngrpc_call_error(call, NNGRPC_INVALID_ARGUMENT,
		    "latitude -90..90, longitude -180..180, limit 0..50"));
	}
	if (!places__v1__nearest_response__new_places(call, resp, n)) {
		return (NNGRPC_RESOURCE_EXHAUSTED);
	}
	for (int i = 0; i < n; i++) {
		resp->places[i]->name = (char *) h[i].name;
		resp->places[i]->distance_km = h[i].km;
	}
	return (NNGRPC_OK);
}

int
main(int argc, char **argv)
{
	static const Places__V1__Places_Impl impl = { distance, nearest };

	return (places__v1__places__serve("placesd", &impl, argc, argv));
}
