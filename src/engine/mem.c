/*
 * Counted allocation.
 *
 * DESIGN
 * ------
 * A dataset owns one hotel__mem counter and passes it to every allocation
 * it keeps, so hotel_dataset_stats() can report its size without walking
 * anything. The counter records requested bytes, which is what the arrays
 * and strings actually use. Build-time scratch uses its own counter and is
 * freed before the dataset is published. Nothing here is shared between
 * threads: a dataset is built by one thread and is immutable afterwards.
 */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (256 * 1024)

struct hotel__arena_block {
	struct hotel__arena_block *b_next;
	size_t                     b_used;
	size_t                     b_cap;
	char                       b_data[];
};

void *
hotel__alloc(hotel__mem *m, size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p != NULL) {
		m->bytes += n;
	}
	return (p);
}

void *
hotel__calloc(hotel__mem *m, size_t n, size_t size)
{
	void *p;
	if (size != 0 && n > SIZE_MAX / size) {
		return (NULL);
	}
	if ((p = calloc(n ? n : 1, size ? size : 1)) != NULL) {
		m->bytes += n * size;
	}
	return (p);
}

void *
hotel__realloc(hotel__mem *m, void *p, size_t oldn, size_t newn)
{
	void *q = realloc(p, newn ? newn : 1);
	if (q != NULL) {
		m->bytes = m->bytes - oldn + newn;
	}
	return (q);
}

int
hotel__grow(hotel__mem *m, void **pp, size_t *capp, size_t need, size_t size)
{
	size_t cap = *capp;
	void  *q;

	if (need <= cap) {
		return (0);
	}
	if (cap < 16) {
		cap = 16;
	}
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			return (-1);
		}
		cap *= 2;
	}
	if (cap > SIZE_MAX / size) {
		return (-1);
	}
	if ((q = hotel__realloc(m, *pp, *capp * size, cap * size)) == NULL) {
		return (-1);
	}
	*pp = q;
	*capp = cap;
	return (0);
}

void
hotel__free(hotel__mem *m, void *p, size_t n)
{
	if (p != NULL) {
		m->bytes -= n;
		free(p);
	}
}

void
hotel__arena_init(hotel__arena *a, hotel__mem *m)
{
	a->a_head = NULL;
	a->a_mem = m;
}

char *
hotel__arena_strndup(hotel__arena *a, const char *s, size_t len)
{
	struct hotel__arena_block *b = a->a_head;
	char                      *p;

	if (b == NULL || b->b_cap - b->b_used < len + 1) {
		size_t cap = len + 1 > ARENA_BLOCK ? len + 1 : ARENA_BLOCK;
		b = hotel__alloc(a->a_mem, sizeof(*b) + cap);
		if (b == NULL) {
			return (NULL);
		}
		b->b_used = 0;
		b->b_cap = cap;
		b->b_next = a->a_head;
		a->a_head = b;
	}
	p = b->b_data + b->b_used;
	memcpy(p, s, len);
	p[len] = '\0';
	b->b_used += len + 1;
	return (p);
}

void
hotel__arena_fini(hotel__arena *a)
{
	struct hotel__arena_block *b, *next;

	for (b = a->a_head; b != NULL; b = next) {
		next = b->b_next;
		hotel__free(a->a_mem, b, sizeof(*b) + b->b_cap);
	}
	a->a_head = NULL;
}
