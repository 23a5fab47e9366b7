/*
 * A bump allocator for one call: the request envelope, the decoded input,
 * handler allocations and the status message all come from it and go with
 * one nngrpc_arena_fini(). Not thread-safe: a call belongs to one thread.
 */
#ifndef NNGRPC_ARENA_H
#define NNGRPC_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct nngrpc_arena_chunk nngrpc_arena_chunk;

typedef struct nngrpc_arena {
	nngrpc_arena_chunk *a_head; /* newest chunk first */
	/* protobuf-c allocator whose allocator_data is this arena. */
	ProtobufCAllocator a_pb;
} nngrpc_arena;

/* Initialises an empty arena; allocates nothing yet. */
void nngrpc_arena_init(nngrpc_arena *arena);

/* Frees every allocation of the arena at once. The arena may be reused
 * after another nngrpc_arena_init(). */
void nngrpc_arena_fini(nngrpc_arena *arena);

/* Returns new memory owned by the arena, max_align_t aligned, or NULL when
 * out of memory. Size 0 gives a valid unique pointer. */
void *nngrpc_arena_alloc(nngrpc_arena *arena, size_t size);

#endif /* NNGRPC_ARENA_H */
