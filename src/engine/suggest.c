/*
 * Suggest: prefix completion over city names and hotel names.
 *
 * DESIGN
 * ------
 * Built with the dataset, read-only afterwards. Every city (a city and
 * country pair) and every distinct folded hotel name is an item; hotels
 * whose names fold to the same text share one item, represented by the one
 * with the most reviews (then the lowest id). An item's weight is its
 * hotel's review count, or for a city the sum of the review counts of all
 * its hotels (a sum, so a city with many well-reviewed hotels outranks a
 * single famous one). Items are ranked once, globally: weight desc, cities
 * before hotels, folded text asc, then city id or doc; a query then only
 * compares these ranks. A trailing separator in the prefix ends its last
 * word: "paris " keeps the entries where "paris" is followed by a space or
 * the end of the text.
 *
 * Folded texts ("hotel bellevue lisboa") sit in one pool. Each item has an
 * entry per word start ("hotel bellevue lisboa", "bellevue lisboa",
 * "lisboa"), and the entries are sorted by the text from there on, so the
 * items with a word starting with the folded prefix form one contiguous
 * range, found by binary search. A query keeps the best `limit` ranks of
 * the range in a small heap, skipping an item already kept (an item can
 * match at two word starts).
 */
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "stop.h"
#include "text.h"

#define FOLD_MAX 1024

typedef struct builder {
	hotel_dataset *ds;
	hotel__mem    *mem;
	hotel__ticker *stop;
} builder;

static int
pool_add(builder *b, const char *s, size_t len, uint32_t *offp)
{
	hotel__suggest *sg = &b->ds->suggest;

	if (sg->pool_len + len + 1 > UINT32_MAX
	    || hotel__grow(b->mem, (void **) &sg->pool, &sg->cap_pool,
	           sg->pool_len + len + 1, 1)
	        != 0) {
		return (HOTEL_ENOMEM);
	}
	memcpy(sg->pool + sg->pool_len, s, len + 1);
	*offp = (uint32_t) sg->pool_len;
	sg->pool_len += len + 1;
	return (HOTEL_OK);
}

static int
item_add(
    builder *b, uint8_t kind, uint64_t weight, uint32_t ref, uint32_t folded)
{
	hotel__suggest *sg = &b->ds->suggest;

	if (hotel__grow(b->mem, (void **) &sg->items, &sg->cap_items,
	        sg->n_items + 1, sizeof(hotel__sug_item))
	    != 0) {
		return (HOTEL_ENOMEM);
	}
	sg->items[sg->n_items++] = (hotel__sug_item) { .weight = weight,
		.folded = folded,
		.ref = ref,
		.rank = 0,
		.kind = kind };
	return (HOTEL_OK);
}

/* For the sorts: the builder's pool. Build-local, passed through a struct
 * array rather than a global so datasets may build concurrently. */
typedef struct rank_key {
	const hotel__sug_item *it;
	const char            *text;
	uint32_t               idx;
} rank_key;

static int
rank_key_cmp(const void *a, const void *b)
{
	const rank_key *x = a, *y = b;
	int             c;

	if (x->it->weight != y->it->weight) {
		return (x->it->weight > y->it->weight ? -1 : 1);
	}
	if (x->it->kind != y->it->kind) {
		return (x->it->kind < y->it->kind ? -1 : 1);
	}
	if ((c = strcmp(x->text, y->text)) != 0) {
		return (c);
	}
	return (x->it->ref < y->it->ref ? -1 : x->it->ref > y->it->ref);
}

/* pfx holds the text's first 8 bytes, big-endian and zero-padded, so most
 * comparisons need no strcmp. */
typedef struct entry_key {
	uint64_t         pfx;
	const char      *text;
	hotel__sug_entry e;
	uint32_t         rank;
} entry_key;

static int
entry_key_cmp(const void *a, const void *b)
{
	const entry_key *x = a, *y = b;
	int              c;

	if (x->pfx != y->pfx) {
		return (x->pfx < y->pfx ? -1 : 1);
	}
	/* Same first 8 bytes; if they include the NUL the texts are equal. */
	if ((x->pfx & 0xff) != 0
	    && (c = strcmp(x->text + 8, y->text + 8)) != 0) {
		return (c);
	}
	return (x->rank < y->rank ? -1 : x->rank > y->rank);
}

static uint64_t
prefix8(const char *s)
{
	uint64_t v = 0;
	for (int k = 0; k < 8 && s[k] != '\0'; k++) {
		v |= (uint64_t) (unsigned char) s[k] << (56 - 8 * k);
	}
	return (v);
}

/* An item per city with a name that has words. */
static int
add_cities(builder *b)
{
	const hotel_dataset *ds = b->ds;
	char                 buf[FOLD_MAX];

	for (size_t i = 0; i < ds->n_cities; i++) {
		uint32_t off;
		size_t   len = hotel__fold_words(
		      ds->cities[i].name, buf, sizeof(buf), NULL);
		if (len == 0) {
			continue;
		}
		if (pool_add(b, buf, len, &off) != 0
		    || item_add(b, HOTEL_SUGGEST_CITY, ds->cities[i].reviews,
		           (uint32_t) i, off)
		        != 0) {
			return (HOTEL_ENOMEM);
		}
	}
	return (HOTEL_OK);
}

/* Hotel d's name: a new item, or a better holder for the item of the same
 * folded name (names maps folded names to items). */
static int
add_hotel(builder *b, hotel__strmap *names, size_t d)
{
	hotel__suggest *sg = &b->ds->suggest;
	const hotel    *h = &b->ds->hotels[d];
	char            buf[FOLD_MAX];
	size_t   len = hotel__fold_words(h->name, buf, sizeof(buf), NULL);
	uint32_t idx, off;
	bool     created;

	if (len == 0) {
		return (HOTEL_OK);
	}
	if (hotel__strmap_get(
	        names, buf, len, true, (uint32_t) sg->n_items, &idx, &created)
	    != 0) {
		return (HOTEL_ENOMEM);
	}
	if (!created) {
		hotel__sug_item *it = &sg->items[idx];
		if (h->review_count > it->weight) {
			it->weight = h->review_count;
			it->ref = (uint32_t) d;
		}
		return (HOTEL_OK);
	}
	if (pool_add(b, buf, len, &off) != 0
	    || item_add(
	           b, HOTEL_SUGGEST_HOTEL, h->review_count, (uint32_t) d, off)
	        != 0) {
		return (HOTEL_ENOMEM);
	}
	return (HOTEL_OK);
}

/* An item per distinct folded hotel name, held by the hotel with the most
 * reviews (then the lowest doc, which is the lowest id). */
static int
add_hotels(builder *b)
{
	hotel__mem    scratch = { 0 };
	hotel__strmap names;
	int           rv = HOTEL_OK;

	hotel__strmap_init(&names, &scratch);
	for (size_t d = 0; d < b->ds->n && rv == HOTEL_OK; d++) {
		rv = hotel__tick(b->stop, (uint32_t) d + 1)
		    ? b->stop->rv
		    : add_hotel(b, &names, d);
	}
	hotel__strmap_fini(&names);
	return (rv);
}

/* Ranks the items globally (items[i].rank) and counts their word starts,
 * the entries, into *n_entriesp. */
static int
rank_items(builder *b, size_t *n_entriesp)
{
	hotel__suggest *sg = &b->ds->suggest;
	rank_key       *rk;
	size_t          n_entries = 0;

	if ((rk = malloc((sg->n_items ? sg->n_items : 1) * sizeof(*rk)))
	    == NULL) {
		return (HOTEL_ENOMEM);
	}
	for (size_t i = 0; i < sg->n_items; i++) {
		if (hotel__tick(b->stop, (uint32_t) i + 1)) {
			free(rk);
			return (b->stop->rv);
		}
		rk[i].it = &sg->items[i];
		rk[i].text = sg->pool + sg->items[i].folded;
		rk[i].idx = (uint32_t) i;
		for (const char *p = rk[i].text; *p != '\0'; p++) {
			n_entries += *p == ' ';
		}
		n_entries++;
	}
	qsort(rk, sg->n_items, sizeof(*rk), rank_key_cmp);
	for (size_t i = 0; i < sg->n_items; i++) {
		sg->items[rk[i].idx].rank = (uint32_t) i;
	}
	free(rk);
	*n_entriesp = n_entries;
	return (hotel__ticker_poll(b->stop)); /* after the sort */
}

/* The entries, one per word start of every item, sorted by text. */
static int
build_entries(builder *b, size_t n_entries)
{
	hotel__suggest *sg = &b->ds->suggest;
	entry_key      *ek = malloc((n_entries ? n_entries : 1) * sizeof(*ek));

	sg->entries
	    = hotel__alloc(b->mem, n_entries * sizeof(hotel__sug_entry));
	if (sg->entries != NULL) {
		sg->n_entries = n_entries; /* its size, for the free */
	}
	if (ek == NULL || sg->entries == NULL) {
		free(ek);
		return (HOTEL_ENOMEM);
	}
	n_entries = 0;
	for (size_t i = 0; i < sg->n_items; i++) {
		uint32_t    off = sg->items[i].folded;
		const char *text = sg->pool + off;
		if (hotel__tick(b->stop, (uint32_t) i + 1)) {
			free(ek);
			return (b->stop->rv);
		}
		for (size_t k = 0; text[k] != '\0'; k++) {
			if (k == 0 || text[k - 1] == ' ') {
				ek[n_entries++] = (entry_key) {
					prefix8(text + k), text + k,
					{ off + (uint32_t) k, (uint32_t) i },
					sg->items[i].rank
				};
			}
		}
	}
	qsort(ek, n_entries, sizeof(*ek), entry_key_cmp);
	for (size_t i = 0; i < n_entries; i++) {
		sg->entries[i] = ek[i].e;
	}
	free(ek);
	return (hotel__ticker_poll(b->stop)); /* after the sort */
}

/* Shrinks the growable arrays to fit (if that fails they stay as they are,
 * which is just as good: their capacities are kept). */
static void
shrink_to_fit(hotel__suggest *sg, hotel__mem *mem)
{
	if (sg->cap_pool > sg->pool_len) {
		char *p = hotel__realloc(
		    mem, sg->pool, sg->cap_pool, sg->pool_len);
		if (p != NULL) {
			sg->pool = p;
			sg->cap_pool = sg->pool_len;
		}
	}
	if (sg->cap_items > sg->n_items) {
		hotel__sug_item *p = hotel__realloc(mem, sg->items,
		    sg->cap_items * sizeof(hotel__sug_item),
		    sg->n_items * sizeof(hotel__sug_item));
		if (p != NULL) {
			sg->items = p;
			sg->cap_items = sg->n_items;
		}
	}
}

int
hotel__suggest_build(hotel_dataset *ds, hotel__mem *mem, hotel__ticker *stop)
{
	hotel__suggest *sg = &ds->suggest;
	builder         b = { .ds = ds, .mem = mem, .stop = stop };
	size_t          n_entries = 0;
	int             rv;

	memset(sg, 0, sizeof(*sg));
	if ((rv = add_cities(&b)) != HOTEL_OK
	    || (rv = add_hotels(&b)) != HOTEL_OK
	    || (rv = rank_items(&b, &n_entries)) != HOTEL_OK
	    || (rv = build_entries(&b, n_entries)) != HOTEL_OK) {
		hotel__suggest_fini(sg, mem);
		return (rv);
	}
	shrink_to_fit(sg, mem);
	return (HOTEL_OK);
}

void
hotel__suggest_fini(hotel__suggest *sg, hotel__mem *mem)
{
	hotel__free(mem, sg->pool, sg->cap_pool);
	hotel__free(mem, sg->items, sg->cap_items * sizeof(hotel__sug_item));
	hotel__free(
	    mem, sg->entries, sg->n_entries * sizeof(hotel__sug_entry));
	memset(sg, 0, sizeof(*sg));
}

/* The entries [*ap, *bp) whose text starts with the folded prefix
 * p[0..len); with trailing, only those where p ends a word. */
static void
entry_range(const hotel__suggest *sg, const char *p, size_t len, bool trailing,
    size_t *ap, size_t *bp)
{
	size_t lo = 0, hi = sg->n_entries, a;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(sg->pool + sg->entries[mid].off, p, len) < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	a = lo;
	hi = sg->n_entries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(sg->pool + sg->entries[mid].off, p, len) <= 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	/* A trailing separator ends the word: keep the entries where it is
	 * followed by the end or a space. In [a, lo) the byte after p is NUL,
	 * a space or a token byte (all > ' '), in that order, so those entries
	 * come first. */
	if (trailing) {
		size_t end = lo;
		lo = a;
		hi = end;
		while (lo < hi) {
			size_t      mid = lo + (hi - lo) / 2;
			const char *t = sg->pool + sg->entries[mid].off;
			if ((unsigned char) t[len] <= ' ') {
				lo = mid + 1;
			} else {
				hi = mid;
			}
		}
	}
	*ap = a;
	*bp = lo;
}

/* The best (lowest) ranks seen are kept in best[0..n), a max-heap of at
 * most limit: best[0] is the worst kept. Each is rank << 32 | item. Offers
 * rank and returns the new n; an item already kept (it matched at another
 * word start) is skipped. */
static inline size_t
top_offer(uint64_t *best, size_t n, size_t limit, uint64_t rank)
{
	size_t k;

	if (n == limit && rank >= best[0]) {
		return (n);
	}
	for (k = 0; k < n; k++) {
		if (best[k] == rank) {
			return (n);
		}
	}
	if (n < limit) {
		k = n++;
		best[k] = rank;
		while (k > 0 && best[(k - 1) / 2] < best[k]) {
			uint64_t x = best[(k - 1) / 2];
			best[(k - 1) / 2] = best[k];
			best[k] = x;
			k = (k - 1) / 2;
		}
		return (n);
	}
	best[0] = rank;
	for (k = 0;;) {
		size_t l = 2 * k + 1, m = k;
		if (l < n && best[l] > best[m]) {
			m = l;
		}
		if (l + 1 < n && best[l + 1] > best[m]) {
			m = l + 1;
		}
		if (m == k) {
			return (n);
		}
		uint64_t x = best[k];
		best[k] = best[m];
		best[m] = x;
		k = m;
	}
}

/* Ranks ascending: a small insertion sort. */
static void
sort_ranks(uint64_t *best, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t x = best[i];
		size_t   j = i;
		while (j > 0 && best[j - 1] > x) {
			best[j] = best[j - 1];
			j--;
		}
		best[j] = x;
	}
}

/* The items best[0..n) as suggestions. Returns new (calloc), or NULL when
 * out of memory. */
static hotel_suggestion *
make_suggestions(const hotel_dataset *ds, const uint64_t *best, size_t n)
{
	const hotel__suggest *sg = &ds->suggest;
	hotel_suggestion     *out = calloc(n, sizeof(*out));

	for (size_t i = 0; out != NULL && i < n; i++) {
		const hotel__sug_item *it = &sg->items[(uint32_t) best[i]];
		out[i].kind = (hotel_suggest_kind) it->kind;
		out[i].weight = it->weight;
		if (it->kind == HOTEL_SUGGEST_CITY) {
			const hotel__city *c = &ds->cities[it->ref];
			out[i].text = c->name;
			out[i].city = c->name;
			out[i].country = c->country;
			out[i].hotel_id = 0;
		} else {
			const hotel *h = &ds->hotels[it->ref];
			out[i].text = h->name;
			out[i].city = h->city;
			out[i].country = h->country;
			out[i].hotel_id = h->id;
		}
	}
	return (out);
}

int
hotel_suggest(const hotel_dataset *ds, const char *prefix, size_t limit,
    const hotel_stop *stop, hotel_suggestion **sp, size_t *np, char *err,
    size_t errlen)
{
	const hotel__suggest *sg;
	char                  p[FOLD_MAX];
	size_t                len, a, b;
	bool                  trailing;
	uint64_t              best[HOTEL_SUGGEST_MAX]; /* see top_offer() */
	size_t                n = 0;
	hotel_suggestion     *out = NULL;
	hotel__ticker         t;
	int                   rv;

	if (ds == NULL || prefix == NULL || sp == NULL || np == NULL) {
		return (
		    hotel__err(HOTEL_EINVAL, err, errlen, "NULL argument"));
	}
	sg = &ds->suggest;
	if (limit < 1 || limit > HOTEL_SUGGEST_MAX) {
		return (hotel__err(HOTEL_EINVAL, err, errlen,
		    "limit: must be 1..%d, got %zu", HOTEL_SUGGEST_MAX,
		    limit));
	}
	hotel__ticker_init(&t, stop, NULL);
	if ((rv = hotel__ticker_poll(&t)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	len = hotel__fold_words(prefix, p, sizeof(p), &trailing);
	if (len == 0) {
		*sp = NULL; /* no words, no suggestions */
		*np = 0;
		return (HOTEL_OK);
	}
	entry_range(sg, p, len, trailing, &a, &b);
	for (size_t i = a; i < b; i++) {
		uint32_t item = sg->entries[i].item;
		if (hotel__tick(&t, (uint32_t) (i - a) + 1)) {
			return (hotel__err(
			    t.rv, err, errlen, "%s", hotel_strerror(t.rv)));
		}
		n = top_offer(best, n, limit,
		    (uint64_t) sg->items[item].rank << 32 | item);
	}
	sort_ranks(best, n);
	if (n > 0 && (out = make_suggestions(ds, best, n)) == NULL) {
		return (
		    hotel__err(HOTEL_ENOMEM, err, errlen, "out of memory"));
	}
	*sp = out;
	*np = n;
	return (HOTEL_OK);
}

void
hotel_suggestions_free(hotel_suggestion *s)
{
	free(s);
}
