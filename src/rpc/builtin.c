/*
 * Health and reflection handlers. They run on workers like any handler
 * and only read the sealed registry (and its atomic serving flags), so
 * they take no lock. Output fields borrow the registry's static strings
 * and the generated files' descriptor sets, which outlive every call.
 */
#include "builtin.h"

#include <string.h>

#include "nngrpc/health/v1/health.nngrpc.h"
#include "nngrpc/reflection/v1/reflection.nngrpc.h"

static nngrpc_status
health_check(nngrpc_call                         *call,
    const Nngrpc__Health__V1__HealthCheckRequest *req,
    Nngrpc__Health__V1__HealthCheckResponse      *resp)
{
	const nngrpc_dispatch *d = nngrpc_call_user(call);
	bool                   serving;

	if (nngrpc_dispatch_serving(d, req->service, &serving) != 0) {
		return (nngrpc_call_error(call, NNGRPC_NOT_FOUND,
		    "service \"%.200s\" is not served here", req->service));
	}
	resp->status = serving
	    ? NNGRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	    : NNGRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	return (NNGRPC_OK);
}

static nngrpc_status
list_services(nngrpc_call                             *call,
    const Nngrpc__Reflection__V1__ListServicesRequest *req,
    Nngrpc__Reflection__V1__ListServicesResponse      *resp)
{
	const nngrpc_dispatch *d = nngrpc_call_user(call);
	size_t                 n = nngrpc_dispatch_service_count(d);

	(void) req;
	if (nngrpc__reflection__v1__list_services_response__new_services(
	        call, resp, n)
	    == NULL) {
		return (nngrpc_call_error(
		    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory"));
	}
	for (size_t i = 0; i < n; i++) {
		resp->services[i]
		    = (char *) nngrpc_dispatch_service_name(d, i);
	}
	return (NNGRPC_OK);
}

static nngrpc_status
file_containing_symbol(nngrpc_call                            *call,
    const Nngrpc__Reflection__V1__FileContainingSymbolRequest *req,
    Nngrpc__Reflection__V1__FileContainingSymbolResponse      *resp)
{
	const nngrpc_dispatch  *d = nngrpc_call_user(call);
	const nngrpc_file_info *f
	    = nngrpc_dispatch_find_symbol(d, req->symbol);

	if (f == NULL) {
		return (nngrpc_call_error(call, NNGRPC_NOT_FOUND,
		    "symbol \"%.200s\" is not defined by any served file",
		    req->symbol));
	}
	resp->file_descriptor_set.data = (uint8_t *) f->descriptor_set;
	resp->file_descriptor_set.len = f->descriptor_set_len;
	resp->file_name = (char *) f->name;
	return (NNGRPC_OK);
}

int
nngrpc_builtin_register(nngrpc_server *server, nngrpc_dispatch *d)
{
	static const Nngrpc__Health__V1__Health_Impl health = {
		.check = health_check,
	};
	static const Nngrpc__Reflection__V1__Reflection_Impl reflection = {
		.list_services = list_services,
		.file_containing_symbol = file_containing_symbol,
	};
	int rv;

	if ((rv = nngrpc__health__v1__health__register(server, &health, d))
	        != 0
	    || (rv = nngrpc__reflection__v1__reflection__register(
	            server, &reflection, d))
	        != 0) {
		return (rv);
	}
	/* Inline: health checks answer even while every worker is busy. */
	if ((rv = nngrpc_dispatch_set_inline(
	         d, "/nngrpc.health.v1.Health/Check", true))
	        != 0
	    || (rv = nngrpc_dispatch_set_inline(
	            d, "/nngrpc.reflection.v1.Reflection/ListServices", true))
	        != 0
	    || (rv = nngrpc_dispatch_set_inline(d,
	            "/nngrpc.reflection.v1.Reflection/FileContainingSymbol",
	            true))
	        != 0) {
		return (rv);
	}
	return (nngrpc_dispatch_set_open(d, "nngrpc.health.v1.Health"));
}
