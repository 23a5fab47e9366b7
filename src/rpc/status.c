/*
 * Status names and descriptions, both from the one table in status_table.h.
 */

#include <stddef.h>

#include <nngrpc/status.h>

#define NNGRPC_STATUS_COUNT_ONE(name, num, desc) +1
_Static_assert(
    NNGRPC_STATUS_COUNT == 0 NNGRPC_STATUS_MAP(NNGRPC_STATUS_COUNT_ONE),
    "NNGRPC_STATUS_COUNT must match status_table.h");

const char *
nngrpc_status_name(int code)
{
	switch (code) {
#define NNGRPC_STATUS_NAME_CASE(name, num, desc)                              \
	case num:                                                             \
		return (#name);
		NNGRPC_STATUS_MAP(NNGRPC_STATUS_NAME_CASE)
	}
	return (NULL);
}

const char *
nngrpc_status_str(int code)
{
	switch (code) {
#define NNGRPC_STATUS_DESC_CASE(name, num, desc)                              \
	case num:                                                             \
		return (desc);
		NNGRPC_STATUS_MAP(NNGRPC_STATUS_DESC_CASE)
	}
	return ("unknown status code");
}

bool
nngrpc_status_valid(int code)
{
	return (nngrpc_status_name(code) != NULL);
}
