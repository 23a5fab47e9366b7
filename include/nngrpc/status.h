/*
 * Status codes: gRPC's names and numbers, generated from status_table.h.
 *
 * Above the transport every nngrpc function that can fail for a caller's
 * reason answers with one of these; below it, nng's int error codes.
 */
#ifndef NNGRPC_STATUS_H
#define NNGRPC_STATUS_H

#include <stdbool.h>

#include <nngrpc/export.h>
#include <nngrpc/status_table.h>

typedef enum nngrpc_status {
#define NNGRPC_STATUS_ENUM(name, num, desc) NNGRPC_##name = num,
	NNGRPC_STATUS_MAP(NNGRPC_STATUS_ENUM)
#undef NNGRPC_STATUS_ENUM
} nngrpc_status;

/* Number of status codes (they are dense, 0 .. NNGRPC_STATUS_COUNT - 1). */
#define NNGRPC_STATUS_COUNT 17

/* Returns the code's upper-case name ("NOT_FOUND"), a static string, or
 * NULL when code is not a status code. */
NNGRPC_API const char *nngrpc_status_name(int code);

/* Returns the code's description ("not found"), a static string, or
 * "unknown status code" when code is not a status code. */
NNGRPC_API const char *nngrpc_status_str(int code);

/* True when code is one of the 17 status codes. */
NNGRPC_API bool nngrpc_status_valid(int code);

#endif /* NNGRPC_STATUS_H */
