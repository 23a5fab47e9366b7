/*
 * Arena: chunks of at least ARENA_CHUNK bytes, newest first; an allocation
 * larger than a chunk gets a chunk of its own. Freeing single allocations
 * is a no-op (protobuf-c's free hook lands here too).
 */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#define ARENA_CHUNK 8192

struct nngrpc_arena_chunk {
	nngrpc_arena_chunk *c_next;
	size_t              c_used;
	size_t              c_cap;
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
	(void) data; /* freed with the arena */
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
	const size_t        align = alignof(max_align_t);
	nngrpc_arena_chunk *c = arena->a_head;
	size_t              need;

	if (size > SIZE_MAX - align - sizeof(*c)) {
		return (NULL);
	}
	need = (size + align - 1) & ~(align - 1);
	if (need == 0) {
		need = align;
	}
	if (c == NULL || c->c_cap - c->c_used < need) {
		size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
		if ((c = malloc(sizeof(*c) + cap)) == NULL) {
			return (NULL);
		}
		c->c_used = 0;
		c->c_cap = cap;
		if (need > ARENA_CHUNK && arena->a_head != NULL) {
			/* Keep filling the current chunk: put the big one
			 * behind it. */
			c->c_next = arena->a_head->c_next;
			arena->a_head->c_next = c;
			c->c_used = need;
			return (c->c_data);
		}
		c->c_next = arena->a_head;
		arena->a_head = c;
	}
	void *p = c->c_data + c->c_used;
	c->c_used += need;
	return (p);
}
