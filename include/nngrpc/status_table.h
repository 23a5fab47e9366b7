/*
 * The one table of nngrpc status codes: gRPC's names and numbers.
 *
 * Everything else is generated from this list: the C enum and
 * nngrpc_status_name() (status.h), and the Python nngrpc.StatusCode enum
 * (clients/python/buildtools/gen_status.py parses the XX lines when the
 * wheel is built). Keep one XX(...) per line.
 */
#ifndef NNGRPC_STATUS_TABLE_H
#define NNGRPC_STATUS_TABLE_H

/* XX(NAME, number, "lower-case description") */
#define NNGRPC_STATUS_MAP(XX)                                                 \
	XX(OK, 0, "ok")                                                       \
	XX(CANCELLED, 1, "cancelled")                                         \
	XX(UNKNOWN, 2, "unknown error")                                       \
	XX(INVALID_ARGUMENT, 3, "invalid argument")                           \
	XX(DEADLINE_EXCEEDED, 4, "deadline exceeded")                         \
	XX(NOT_FOUND, 5, "not found")                                         \
	XX(ALREADY_EXISTS, 6, "already exists")                               \
	XX(PERMISSION_DENIED, 7, "permission denied")                         \
	XX(RESOURCE_EXHAUSTED, 8, "resource exhausted")                       \
	XX(FAILED_PRECONDITION, 9, "failed precondition")                     \
	XX(ABORTED, 10, "aborted")                                            \
	XX(OUT_OF_RANGE, 11, "out of range")                                  \
	XX(UNIMPLEMENTED, 12, "unimplemented")                                \
	XX(INTERNAL, 13, "internal error")                                    \
	XX(UNAVAILABLE, 14, "unavailable")                                    \
	XX(DATA_LOSS, 15, "data loss")                                        \
	XX(UNAUTHENTICATED, 16, "unauthenticated")

#endif /* NNGRPC_STATUS_TABLE_H */
