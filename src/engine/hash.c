/*
 * Hashing, PRNG and the build-time interning map.
 *
 * DESIGN
 * ------
 * Everything here must give the same answer on every machine: the dataset
 * id and the generated data depend on it. So the hash reads bytes in
 * little-endian order explicitly, and the PRNG is xoshiro256** (Blackman and
 * Vigna) seeded through splitmix64, never rand().
 *
 * The interning map is open addressing with linear probing over a slot array
 * of entry indices; entries stay in insertion order, which callers use to
 * number their terms and cities 0, 1, 2, ... It is only used while one
 * thread builds a dataset.
 */
#include "hash.h"

#include <string.h>

static inline uint64_t
load_le64(const unsigned char *p)
{
	return ((uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
	    | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
	    | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
	    | (uint64_t) p[7] << 56);
}

uint64_t
hotel__hash(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *s = p;
	uint64_t h = seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (n + 1));
	uint64_t tail = 0;
	size_t   i;

	while (n >= 8) {
		h = (h ^ hotel__mix64(load_le64(s)))
		    * UINT64_C(0xff51afd7ed558ccd);
		h ^= h >> 29;
		s += 8;
		n -= 8;
	}
	for (i = 0; i < n; i++) {
		tail |= (uint64_t) s[i] << (8 * i);
	}
	h = (h ^ hotel__mix64(tail + n)) * UINT64_C(0xc4ceb9fe1a85ec53);
	return (hotel__mix64(h));
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return ((x << k) | (x >> (64 - k)));
}

void
hotel__rng_seed(hotel__rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		seed += UINT64_C(0x9e3779b97f4a7c15);
		r->s[i] = hotel__mix64(seed);
	}
}

uint64_t
hotel__rng_next(hotel__rng *r)
{
	uint64_t *s = r->s;
	uint64_t  result = rotl(s[1] * 5, 7) * 9;
	uint64_t  t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return (result);
}

uint32_t
hotel__rng_below(hotel__rng *r, uint32_t n)
{
	return (
	    (uint32_t) (((hotel__rng_next(r) >> 32) * (uint64_t) n) >> 32));
}

double
hotel__rng_unit(hotel__rng *r)
{
	return ((double) (hotel__rng_next(r) >> 11) * 0x1.0p-53);
}

void
hotel__strmap_init(hotel__strmap *m, hotel__mem *mem)
{
	memset(m, 0, sizeof(*m));
	m->m_mem = mem;
	hotel__arena_init(&m->m_keys, mem);
}

void
hotel__strmap_fini(hotel__strmap *m)
{
	hotel__free(m->m_mem, m->m_slots, m->m_nslots * sizeof(uint32_t));
	hotel__free(m->m_mem, m->m_ents, m->m_cap * sizeof(m->m_ents[0]));
	hotel__arena_fini(&m->m_keys);
	m->m_slots = NULL;
	m->m_ents = NULL;
}

static int
rehash(hotel__strmap *m, size_t nslots)
{
	uint32_t *slots = hotel__calloc(m->m_mem, nslots, sizeof(uint32_t));
	if (slots == NULL) {
		return (-1);
	}
	for (size_t i = 0; i < m->m_n; i++) {
		size_t j = m->m_ents[i].hash & (nslots - 1);
		while (slots[j] != 0) {
			j = (j + 1) & (nslots - 1);
		}
		slots[j] = (uint32_t) (i + 1);
	}
	hotel__free(m->m_mem, m->m_slots, m->m_nslots * sizeof(uint32_t));
	m->m_slots = slots;
	m->m_nslots = nslots;
	return (0);
}

/* The map's hash: fast, host byte order (it never leaves the process). */
static inline uint64_t
map_hash(const char *key, size_t len)
{
	uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ len;
	uint64_t w;

	while (len >= 8) {
		memcpy(&w, key, 8);
		h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
		h ^= h >> 32;
		key += 8;
		len -= 8;
	}
	if (len > 0) {
		w = 0;
		memcpy(&w, key, len);
		h = (h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53);
	}
	return (hotel__mix64(h));
}

int
hotel__strmap_get(hotel__strmap *m, const char *key, size_t len, bool insert,
    uint32_t val, uint32_t *valp, bool *createdp)
{
	uint64_t h = map_hash(key, len);
	size_t   j;
	char    *copy;

	if (m->m_nslots == 0 && rehash(m, 64) != 0) {
		return (-1);
	}
	j = h & (m->m_nslots - 1);
	while (m->m_slots[j] != 0) {
		struct hotel__strmap_ent *e = &m->m_ents[m->m_slots[j] - 1];
		if (e->hash == h && e->len == len
		    && memcmp(e->key, key, len) == 0) {
			*valp = e->val;
			if (createdp != NULL) {
				*createdp = false;
			}
			return (0);
		}
		j = (j + 1) & (m->m_nslots - 1);
	}
	if (!insert) {
		return (1);
	}
	if (len > UINT32_MAX || m->m_n >= UINT32_MAX - 1
	    || hotel__grow(m->m_mem, (void **) &m->m_ents, &m->m_cap,
	           m->m_n + 1, sizeof(m->m_ents[0]))
	        != 0
	    || (copy = hotel__arena_strndup(&m->m_keys, key, len)) == NULL) {
		return (-1);
	}
	m->m_ents[m->m_n] = (struct hotel__strmap_ent) {
		.hash = h, .key = copy, .len = (uint32_t) len, .val = val
	};
	m->m_n++;
	m->m_slots[j] = (uint32_t) m->m_n;
	if (m->m_n * 2 > m->m_nslots && rehash(m, m->m_nslots * 2) != 0) {
		/* Still consistent: the slot array is merely full-ish. */
		m->m_n--;
		m->m_slots[j] = 0;
		return (-1);
	}
	*valp = val;
	if (createdp != NULL) {
		*createdp = true;
	}
	return (0);
}

const char *
hotel__strmap_key(const hotel__strmap *m, uint32_t i)
{
	return (m->m_ents[i].key);
}
