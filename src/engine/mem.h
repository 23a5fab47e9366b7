/*
 * Counted allocation: every byte a dataset holds goes through these, so that
 * Stats can report it exactly (bytes requested, malloc overhead excluded).
 */
#ifndef ENGINE_MEM_H
#define ENGINE_MEM_H

#include <stddef.h>

/* A byte counter. Not thread-safe: a dataset is built by one thread. */
typedef struct hotel__mem {
	size_t bytes;
} hotel__mem;

/* malloc(n) (n may be 0), counted. NULL on failure. */
void *hotel__alloc(hotel__mem *m, size_t n);
/* calloc(n, size) with overflow check, counted. */
void *hotel__calloc(hotel__mem *m, size_t n, size_t size);
/* Resizes p (NULL or from these functions, oldn bytes) to newn bytes. On
 * failure returns NULL and p is untouched. */
void *hotel__realloc(hotel__mem *m, void *p, size_t oldn, size_t newn);
/* Grows *pp, an array of *capp elements of size bytes, to hold at least
 * need elements (doubling). Returns 0 or -1 (out of memory, *pp intact). */
int hotel__grow(
    hotel__mem *m, void **pp, size_t *capp, size_t need, size_t size);
/* Frees p, which holds n bytes. NULL is a no-op. */
void hotel__free(hotel__mem *m, void *p, size_t n);

/* An arena of strings: blocks of at least 256 KiB, freed all at once. */
typedef struct hotel__arena {
	struct hotel__arena_block *a_head;
	hotel__mem                *a_mem;
} hotel__arena;

void hotel__arena_init(hotel__arena *a, hotel__mem *m);
/* Copies len bytes of s and a NUL. Returns new (owned by the arena), or
 * NULL when out of memory. */
char *hotel__arena_strndup(hotel__arena *a, const char *s, size_t len);
void  hotel__arena_fini(hotel__arena *a);

#endif /* ENGINE_MEM_H */
