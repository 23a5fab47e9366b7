/*
 * A stand-in for src/rpc/arena.c in fuzz_payload: the same API, but every
 * allocation is a malloc of its own, so AddressSanitizer puts redzones
 * around each message, array and string a call allocates. With the real
 * arena, a handler reading past an array in the middle of an 8 KiB chunk
 * reads valid memory and nothing reports it. fuzz_dispatch keeps the real
 * arena, so both are fuzzed.
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "arena.h"

struct nngrpc_arena_chunk {
	nngrpc_arena_chunk *c_next;
	alignas(max_align_t) unsigned char c_data[];
};

static void *
pb_alloc(void *data, size_t size)
{
	return (nngrpc_arena_alloc(data, size));
}

static void
pb_free(void *data, void *ptr)
{
	(void) data; /* freed with the arena, as in arena.c */
	(void) ptr;
}

void
nngrpc_arena_init(nngrpc_arena *arena)
{
	arena->a_head = NULL;
	arena->a_pb.alloc = pb_alloc;
	arena->a_pb.free = pb_free;
	arena->a_pb.allocator_data = arena;
}

void
nngrpc_arena_fini(nngrpc_arena *arena)
{
	nngrpc_arena_chunk *c = arena->a_head;

	while (c != NULL) {
		nngrpc_arena_chunk *next = c->c_next;
		free(c);
		c = next;
	}
	arena->a_head = NULL;
}

void *
nngrpc_arena_alloc(nngrpc_arena *arena, size_t size)
{
	nngrpc_arena_chunk *c;

	if (size > SIZE_MAX - sizeof(*c)) {
		return (NULL);
	}
	if ((c = malloc(sizeof(*c) + size)) == NULL) {
		return (NULL);
	}
	c->c_next = arena->a_head;
	arena->a_head = c;
	return (c->c_data);
}
