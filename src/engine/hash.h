/*
 * Hashing, the generator's PRNG, and an interning map from byte strings to
 * small integers, used while a dataset is built.
 */
#ifndef ENGINE_HASH_H
#define ENGINE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t
hotel__mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return (x);
}

/* A 64-bit hash of n bytes, the same on every machine (bytes are read
 * little-endian whatever the host). Not cryptographic. */
uint64_t hotel__hash(const void *p, size_t n, uint64_t seed);

/* Folds v into the running hash h. */
static inline uint64_t
hotel__hash_u64(uint64_t h, uint64_t v)
{
	return (
	    hotel__mix64(h ^ hotel__mix64(v + UINT64_C(0x9e3779b97f4a7c15))));
}

/* xoshiro256**, seeded through splitmix64. */
typedef struct hotel__rng {
	uint64_t s[4];
} hotel__rng;

void     hotel__rng_seed(hotel__rng *r, uint64_t seed);
uint64_t hotel__rng_next(hotel__rng *r);
/* Uniform in [0, n), n > 0 (Lemire's multiply-shift, bias below 2^-32). */
uint32_t hotel__rng_below(hotel__rng *r, uint32_t n);
/* Uniform in [0, 1) with 53 bits. */
double hotel__rng_unit(hotel__rng *r);

/* Interning map: byte string -> uint32 value. Keys are copied into an arena
 * on insertion; both the map and the keys are counted in mem. */
typedef struct hotel__strmap {
	uint32_t *m_slots;  /* entry index + 1; 0 = empty */
	size_t    m_nslots; /* power of two */
	struct hotel__strmap_ent {
		uint64_t    hash;
		const char *key;
		uint32_t    len;
		uint32_t    val;
	} * m_ents;
	size_t       m_n, m_cap;
	hotel__mem  *m_mem;
	hotel__arena m_keys;
} hotel__strmap;

void hotel__strmap_init(hotel__strmap *m, hotel__mem *mem);
void hotel__strmap_fini(hotel__strmap *m);
/* Looks key up; when absent and insert is true, adds it with value val.
 * Returns the entry's value in *valp and whether it was created in
 * *createdp (may be NULL). Returns 0, 1 if absent and not inserted, or -1
 * when out of memory. */
int hotel__strmap_get(hotel__strmap *m, const char *key, size_t len,
    bool insert, uint32_t val, uint32_t *valp, bool *createdp);
/* The interned copy (NUL-terminated) of the i-th key inserted. */
const char *hotel__strmap_key(const hotel__strmap *m, uint32_t i);

#endif /* ENGINE_HASH_H */
