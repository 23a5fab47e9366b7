/*
 * Suggestions: prefix completion over city names and hotel names.
 */
#ifndef ENGINE_SUGGEST_H
#define ENGINE_SUGGEST_H

#include <stddef.h>
#include <stdint.h>

#include "hotel.h"
#include "mem.h"

typedef struct hotel__sug_item {
	uint64_t weight;
	uint32_t folded; /* offset of the folded text in the pool */
	uint32_t ref;    /* city id (CITY) or document (HOTEL) */
	uint32_t rank;   /* position in the global ranking order */
	uint8_t  kind;   /* hotel_suggest_kind */
} hotel__sug_item;

/* One word start of one item: the item's folded text from that word on. */
typedef struct hotel__sug_entry {
	uint32_t off; /* into the pool */
	uint32_t item;
} hotel__sug_entry;

typedef struct hotel__suggest {
	hotel__sug_item  *items;
	size_t            n_items;
	hotel__sug_entry *entries; /* sorted by the text at off */
	size_t            n_entries;
	char             *pool; /* folded texts, NUL-terminated */
	size_t            pool_len;
	size_t            cap_items, cap_pool; /* as allocated */
} hotel__suggest;

struct hotel_dataset;
struct hotel__ticker;

/* Builds ds->suggest for a dataset whose hotels, cities and city_of are
 * set, reading nothing else and writing nothing else, so it may run on a
 * thread of its own while the index builds. Counted in mem. Returns
 * HOTEL_OK, HOTEL_ENOMEM or, when stop holds, its reason (nothing kept
 * allocated on failure). */
int hotel__suggest_build(
    struct hotel_dataset *ds, hotel__mem *mem, struct hotel__ticker *stop);
void hotel__suggest_fini(hotel__suggest *sg, hotel__mem *mem);

#endif /* ENGINE_SUGGEST_H */
