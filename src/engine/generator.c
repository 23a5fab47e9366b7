/*
 * The generator: a deterministic, plausible world of hotels.
 *
 * DESIGN
 * ------
 * hotel_dataset_generate(count, seed) draws every hotel from one
 * xoshiro256** stream (hash.c), in id order 1..count, so the same (count,
 * seed) gives the same bytes on every machine. To keep that promise the
 * generator uses only integer arithmetic and IEEE-exact double operations
 * (+, -, *, /, round): no rand(), no libm sin/cos/exp/pow, whose last bits
 * differ between C libraries. The one cosine it needs (to turn km into
 * degrees of longitude) is a Taylor polynomial below.
 *
 * What it makes: each hotel is placed in a real city (cities.c) chosen with
 * probability proportional to the city's weight, uniformly within a few km
 * of the centre. Stars follow a bell (3 most common); the nightly price
 * follows the stars times the city's price level with some spread; the
 * rating (one decimal) rises with the stars; review counts are heavy-tailed
 * (a Pareto-like 1/u law, plus a few brand-new hotels with none). Names
 * come from small word lists in the city's language ("Hôtel Bellevue
 * Paris", "Pousada Estrela", "Grand Palace Tokyo"), accents included, and
 * descriptions are a sentence or two built from the hotel's amenities and
 * its city and country.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "hash.h"
#include "hotel.h"
#include "stop.h"

enum lang { L_EN, L_FR, L_ES, L_PT, L_DE, L_IT, L_JA, L_COUNT };

static const struct {
	const char *country;
	enum lang   lang;
} country_lang[] = {
	{ "France", L_FR },
	{ "Belgium", L_FR },
	{ "Monaco", L_FR },
	{ "Luxembourg", L_FR },
	{ "Morocco", L_FR },
	{ "Tunisia", L_FR },
	{ "Algeria", L_FR },
	{ "Senegal", L_FR },
	{ "Côte d'Ivoire", L_FR },
	{ "Cameroon", L_FR },
	{ "DR Congo", L_FR },
	{ "Madagascar", L_FR },
	{ "French Polynesia", L_FR },
	{ "New Caledonia", L_FR },
	{ "Spain", L_ES },
	{ "Mexico", L_ES },
	{ "Argentina", L_ES },
	{ "Chile", L_ES },
	{ "Peru", L_ES },
	{ "Colombia", L_ES },
	{ "Ecuador", L_ES },
	{ "Bolivia", L_ES },
	{ "Paraguay", L_ES },
	{ "Uruguay", L_ES },
	{ "Venezuela", L_ES },
	{ "Cuba", L_ES },
	{ "Dominican Republic", L_ES },
	{ "Puerto Rico", L_ES },
	{ "Panama", L_ES },
	{ "Costa Rica", L_ES },
	{ "Guatemala", L_ES },
	{ "El Salvador", L_ES },
	{ "Nicaragua", L_ES },
	{ "Portugal", L_PT },
	{ "Brazil", L_PT },
	{ "Angola", L_PT },
	{ "Mozambique", L_PT },
	{ "Germany", L_DE },
	{ "Austria", L_DE },
	{ "Switzerland", L_DE },
	{ "Italy", L_IT },
	{ "Japan", L_JA },
};

/* Words for a place to stay, by language. */
static const char *const kinds[L_COUNT][5] = {
	[L_EN] = { "Hotel", "Inn", "Lodge", "Hotel", "House" },
	[L_FR] = { "Hôtel", "Auberge", "Résidence", "Château", "Hôtel" },
	[L_ES] = { "Hotel", "Hostal", "Posada", "Parador", "Casa" },
	[L_PT] = { "Hotel", "Pousada", "Casa", "Solar", "Estalagem" },
	[L_DE] = { "Hotel", "Gasthof", "Gästehaus", "Pension", "Landhaus" },
	[L_IT] = { "Hotel", "Albergo", "Locanda", "Palazzo", "Villa" },
	[L_JA] = { "Hotel", "Ryokan", "Inn", "Hotel", "Ryokan" },
};

static const char *const words[] = { "Bellevue", "Belvedere", "Miramar",
	"Continental", "Europa", "Astoria", "Savoy", "Metropole", "Excelsior",
	"Majestic", "Splendid", "Imperial", "Regina", "Victoria", "Panorama",
	"Aurora", "Estrela", "Sol", "Luna", "Paraíso", "Jardín", "Océano",
	"Étoile", "Lumière", "Königshof", "Edelweiß", "Schönblick", "Bahía",
	"Pérola", "Señorial", "Riviera", "Lido", "Marina", "Opéra", "Cosmos",
	"Orient", "Pacific", "Atlantic", "Horizon", "Oasis", "Lotus", "Sakura",
	"Jade", "Saffron", "Baobab", "Acacia", "Alhambra", "Mirabell",
	"Fontaine", "Dorada", "Corazón", "Mañana", "Crème", "Brücke", "Zenith",
	"Amber", "Solstice", "Cascade", "Meridian", "Tivoli" };

static const char *const adjectives[] = { "Grand", "Royal", "Golden", "Silver",
	"Blue", "Green", "Old", "New", "Little", "Majestic", "Sunny", "Quiet",
	"Hidden", "Crystal", "Emerald", "Ivory", "Coral", "Ocean", "Park",
	"City", "Harbour", "River", "Garden", "Central", "Urban", "Classic",
	"Modern", "Boutique", "Red", "White" };

static const char *const nouns[] = { "Palace", "Plaza", "Garden", "Tower",
	"Bay", "View", "Lodge", "Inn", "Suites", "Residence", "House", "Court",
	"Star", "Crown", "Bridge", "Lake", "Hill", "Castle", "Manor", "Oasis",
	"Pearl", "Retreat", "Gate", "Square", "Terrace", "Heights", "Haven",
	"Point", "Springs", "Lion" };

static const char *const suffixes[] = { "Hotel", "Suites", "Inn", "Resort",
	"Apartments", "Hostel", "Hotel", "Hotel" };

static const char *const openings[3][5] = {
	{ "A simple", "A friendly", "A budget", "A cosy", "A family-run" },
	{ "A comfortable", "A charming", "A modern", "A welcoming",
	    "A stylish" },
	{ "An elegant", "A luxurious", "A refined", "A grand",
	    "An exclusive" },
};

static const char *const desc_kinds[]
    = { "hotel", "guesthouse", "boutique hotel", "resort", "inn", "hotel" };

static const char *const wheres[] = { "in the heart of", "in the old town of",
	"close to the centre of", "on a quiet street in",
	"near the waterfront of", "in the business district of",
	"a short walk from the main square of",
	"in a leafy neighbourhood of" };

static const char *const audiences[] = { "families", "couples",
	"business travellers", "backpackers", "long stays", "weekend breaks" };

static const char *const amenity_phrases[HOTEL_AMENITY_COUNT] = {
	[HOTEL_AMENITY_WIFI] = "free wifi",
	[HOTEL_AMENITY_POOL] = "an outdoor pool",
	[HOTEL_AMENITY_SPA] = "a spa",
	[HOTEL_AMENITY_GYM] = "a fitness gym",
	[HOTEL_AMENITY_PARKING] = "free parking",
	[HOTEL_AMENITY_BREAKFAST] = "breakfast included",
	[HOTEL_AMENITY_PETS] = "pets welcome",
	[HOTEL_AMENITY_BEACH] = "beach access",
	[HOTEL_AMENITY_RESTAURANT] = "an on-site restaurant",
	[HOTEL_AMENITY_BAR] = "a cocktail bar",
	[HOTEL_AMENITY_AIR_CONDITIONING] = "air conditioning",
	[HOTEL_AMENITY_AIRPORT_SHUTTLE] = "an airport shuttle",
	[HOTEL_AMENITY_KITCHEN] = "a shared kitchen",
	[HOTEL_AMENITY_EV_CHARGING] = "EV charging",
	[HOTEL_AMENITY_SAUNA] = "a sauna",
	[HOTEL_AMENITY_FAMILY_ROOMS] = "family rooms",
	[HOTEL_AMENITY_ROOM_SERVICE] = "room service",
	[HOTEL_AMENITY_ACCESSIBLE] = "step-free access",
};

/* Percent chance of each amenity: base + per_star * stars. */
static const struct {
	int base, per_star;
} amenity_odds[HOTEL_AMENITY_COUNT] = {
	[HOTEL_AMENITY_WIFI] = { 85, 3 },
	[HOTEL_AMENITY_POOL] = { 5, 10 },
	[HOTEL_AMENITY_SPA] = { -5, 9 },
	[HOTEL_AMENITY_GYM] = { 0, 12 },
	[HOTEL_AMENITY_PARKING] = { 40, 5 },
	[HOTEL_AMENITY_BREAKFAST] = { 35, 6 },
	[HOTEL_AMENITY_PETS] = { 25, 0 },
	[HOTEL_AMENITY_BEACH] = { 12, 0 },
	[HOTEL_AMENITY_RESTAURANT] = { 10, 15 },
	[HOTEL_AMENITY_BAR] = { 5, 15 },
	[HOTEL_AMENITY_AIR_CONDITIONING] = { 40, 10 },
	[HOTEL_AMENITY_AIRPORT_SHUTTLE] = { 5, 6 },
	[HOTEL_AMENITY_KITCHEN] = { 25, -3 },
	[HOTEL_AMENITY_EV_CHARGING] = { 2, 5 },
	[HOTEL_AMENITY_SAUNA] = { -4, 8 },
	[HOTEL_AMENITY_FAMILY_ROOMS] = { 30, 0 },
	[HOTEL_AMENITY_ROOM_SERVICE] = { -10, 16 },
	[HOTEL_AMENITY_ACCESSIBLE] = { 20, 8 },
};

/* Nightly base price in cents by stars, at cost_pct 100. */
static const int64_t base_price[6] = { 0, 4500, 7000, 11000, 18000, 34000 };

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Buffers for a generated name and description. */
#define NAME_LEN 160
#define DESC_LEN 512

static const char *
pick(hotel__rng *r, const char *const *v, size_t n)
{
	return (v[hotel__rng_below(r, (uint32_t) n)]);
}

static enum lang
city_lang(const hotel_world_city *c)
{
	if (strcmp(c->name, "Genève") == 0 || strcmp(c->name, "Montréal") == 0
	    || strcmp(c->name, "Québec") == 0) {
		return (L_FR);
	}
	for (size_t i = 0; i < N_OF(country_lang); i++) {
		if (strcmp(c->country, country_lang[i].country) == 0) {
			return (country_lang[i].lang);
		}
	}
	return (L_EN);
}

/* cos(deg) by its Taylor series around 0, |deg| <= 90: exact IEEE
 * operations only, so every machine gets the same bits. */
static double
det_cos_deg(double deg)
{
	double x = deg * (3.14159265358979323846 / 180.0);
	double x2 = x * x, term = 1.0, sum = 1.0;

	for (int k = 1; k <= 12; k++) {
		term = -term * x2 / (double) ((2 * k - 1) * (2 * k));
		sum += term;
	}
	return (sum);
}

/* Roughly normal in [-1, 1]: the mean of four uniforms, recentred. */
static double
bell(hotel__rng *r)
{
	double s = 0;
	for (int i = 0; i < 4; i++) {
		s += hotel__rng_unit(r);
	}
	return (s / 2.0 - 1.0);
}

/* A string being assembled in a fixed buffer; snprintf is the slowest
 * part of generating otherwise. Truncates silently at cap - 1. */
typedef struct sbuf {
	char  *s;
	size_t len, cap;
} sbuf;

static void
put(sbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (n > b->cap - 1 - b->len) {
		n = b->cap - 1 - b->len;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* Puts the strings of a NULL-terminated list, separated by spaces. */
static void
put_words(sbuf *b, const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	for (const char *w = first; w != NULL; w = va_arg(ap, const char *)) {
		if (b->len > 0) {
			put(b, " ");
		}
		put(b, w);
	}
	va_end(ap);
}

/* Draws go into locals first, in a fixed order: C leaves the evaluation
 * order of function arguments unspecified. */
static void
make_name(hotel__rng *r, const hotel_world_city *c, enum lang lang, char *buf,
    size_t len)
{
	const char *kind = kinds[lang][hotel__rng_below(r, 5)];
	uint32_t    p = hotel__rng_below(r, 100);
	const char *w = pick(r, words, N_OF(words));
	const char *adj = pick(r, adjectives, N_OF(adjectives));
	const char *noun = pick(r, nouns, N_OF(nouns));
	const char *suf = pick(r, suffixes, N_OF(suffixes));
	sbuf        b = { buf, 0, len };

	buf[0] = '\0';
	if (p < 25) {
		put_words(&b, kind, w, c->name, NULL);
	} else if (p < 45) {
		put_words(&b, adj, noun, c->name, NULL);
	} else if (p < 60) {
		put_words(&b, adj, noun, "Hotel", NULL);
	} else if (p < 75) {
		put_words(&b, kind, w, NULL);
	} else if (p < 90) {
		put_words(&b, c->name, noun, suf, NULL);
	} else {
		put_words(&b, "The", adj, noun, NULL);
	}
}

static void
make_description(hotel__rng *r, const hotel_world_city *c, int stars,
    uint32_t amenities, char *buf, size_t len)
{
	int         tier = stars <= 2 ? 0 : stars == 3 ? 1 : 2;
	const char *list[3], *opening, *kind, *where;
	int         n = 0, have = 0;
	sbuf        b = { buf, 0, len };

	for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
		have += (amenities >> a) & 1;
	}
	/* Up to three of its amenities, chosen in a random rotation. */
	if (have > 0) {
		int start = (int) hotel__rng_below(r, HOTEL_AMENITY_COUNT);
		for (int i = 0; i < HOTEL_AMENITY_COUNT && n < 3; i++) {
			int a = (start + i) % HOTEL_AMENITY_COUNT;
			if (amenities & HOTEL_AMENITY_BIT(a)) {
				list[n++] = amenity_phrases[a];
			}
		}
	}
	opening = openings[tier][hotel__rng_below(r, 5)];
	kind = pick(r, desc_kinds, N_OF(desc_kinds));
	where = pick(r, wheres, N_OF(wheres));
	buf[0] = '\0';
	put_words(&b, opening, kind, where, c->name, NULL);
	put(&b, ", ");
	put(&b, c->country);
	put(&b, ".");
	if (n == 0) {
		put(&b, " Rooms are simple and clean.");
	} else {
		put(&b, " Guests enjoy ");
		for (int i = 0; i < n; i++) {
			put(&b, i == 0 ? "" : i == n - 1 ? " and " : ", ");
			put(&b, list[i]);
		}
		put(&b, ".");
	}
	if (hotel__rng_below(r, 100) < 40) {
		put(&b, " Ideal for ");
		put(&b, pick(r, audiences, N_OF(audiences)));
		put(&b, ".");
	}
}

static int
make_stars(hotel__rng *r)
{
	uint32_t p = hotel__rng_below(r, 100);
	return (p < 8 ? 1 : p < 28 ? 2 : p < 65 ? 3 : p < 90 ? 4 : 5);
}

/* The city table with cumulative weights, to draw a city with probability
 * proportional to its weight. */
typedef struct city_draw {
	const hotel_world_city *cities;
	size_t                  n;
	uint32_t                cum[512];
	uint32_t                total;
} city_draw;

static int
city_draw_init(city_draw *cd)
{
	cd->cities = hotel_world_cities(&cd->n);
	if (cd->n > N_OF(cd->cum)) {
		return (HOTEL_EINVAL); /* grow cum[] with the table */
	}
	cd->total = 0;
	for (size_t i = 0; i < cd->n; i++) {
		cd->total += (uint32_t) cd->cities[i].weight;
		cd->cum[i] = cd->total;
	}
	return (HOTEL_OK);
}

static const hotel_world_city *
draw_city(hotel__rng *r, const city_draw *cd)
{
	uint32_t x = hotel__rng_below(r, cd->total);
	size_t   lo = 0, hi = cd->n - 1;

	while (lo < hi) { /* first cum[] > x */
		size_t mid = (lo + hi) / 2;
		if (cd->cum[mid] > x) {
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}
	return (&cd->cities[lo]);
}

/* Uniform in a disc of 2..7 km around the city centre, rounded to 1e-6
 * degrees. */
static void
place(hotel__rng *r, const hotel_world_city *c, hotel *h)
{
	double u, v, radius, lat, lon;

	do {
		u = 2.0 * hotel__rng_unit(r) - 1.0;
		v = 2.0 * hotel__rng_unit(r) - 1.0;
	} while (u * u + v * v > 1.0);
	radius = 1.5 + 0.6 * c->weight;
	lat = c->latitude + v * radius / 111.195;
	lon = c->longitude + u * radius / (111.195 * det_cos_deg(c->latitude));
	if (lon > 180.0) {
		lon -= 360.0;
	} else if (lon < -180.0) {
		lon += 360.0;
	}
	h->latitude = round(lat * 1e6) / 1e6;
	h->longitude = round(lon * 1e6) / 1e6;
}

static uint32_t
make_amenities(hotel__rng *r, int stars)
{
	uint32_t amenities = 0;

	for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
		int odds
		    = amenity_odds[a].base + amenity_odds[a].per_star * stars;
		if ((int) hotel__rng_below(r, 100) < odds) {
			amenities |= HOTEL_AMENITY_BIT(a);
		}
	}
	return (amenities);
}

/* Whole currency units: base * city level * 0.75..1.35, at least 15. */
static int64_t
make_price(hotel__rng *r, const hotel_world_city *c, int stars)
{
	int64_t price = base_price[stars] * c->cost_pct
	    * (75 + (int64_t) hotel__rng_below(r, 61)) / 1000000 * 100;
	return (price < 1500 ? 1500 : price);
}

/* Review count (heavy-tailed) and rating (one decimal, rising with the
 * stars); 3% are new, with neither. */
static void
make_reviews(hotel__rng *r, const hotel_world_city *c, hotel *h)
{
	double u;
	int    tenths;

	if (hotel__rng_below(r, 100) < 3) {
		h->review_count = 0;
		h->rating = 0.0;
		(void) bell(r); /* kept: the draws are part of the output */
		return;
	}
	u = hotel__rng_unit(r);
	h->review_count = (uint32_t) ((8.0 + 3.0 * c->weight + 4.0 * h->stars)
	    / (u + 0.0015));
	if (h->review_count > 50000) {
		h->review_count = 50000;
	}
	tenths = 56 + 6 * h->stars + (int) (bell(r) * 14.0);
	tenths = tenths < 10 ? 10 : tenths > 100 ? 100 : tenths;
	h->rating = tenths / 10.0;
}

/* Draws hotel id into *h; its name and description are written to name
 * (NAME_LEN bytes) and desc (DESC_LEN), which *h points to. The order of
 * the draws is part of the output: changing it changes every generated
 * dataset. */
static void
make_hotel(hotel__rng *r, const city_draw *cd, uint64_t id, hotel *h,
    char *name, char *desc)
{
	const hotel_world_city *c = draw_city(r, cd);

	memset(h, 0, sizeof(*h));
	h->id = id;
	h->city = c->name;
	h->country = c->country;
	h->stars = make_stars(r);
	place(r, c, h);
	h->amenities = make_amenities(r, h->stars);
	h->price_cents = make_price(r, c, h->stars);
	make_reviews(r, c, h);
	make_name(r, c, city_lang(c), name, NAME_LEN);
	make_description(r, c, h->stars, h->amenities, desc, DESC_LEN);
	h->name = name;
	h->description = desc;
}

int
hotel_dataset_generate(
    size_t count, uint64_t seed, const hotel_stop *stop, hotel_dataset **dsp)
{
	city_draw      cd;
	hotel_dataset *ds;
	hotel__rng     rng;
	hotel__ticker  t;
	char           name[NAME_LEN], desc[DESC_LEN];
	int            rv;

	if (count == 0 || count > HOTEL_GENERATE_MAX) {
		return (HOTEL_EINVAL);
	}
	hotel__ticker_init(&t, stop, NULL);
	if ((rv = hotel__ticker_poll(&t)) != HOTEL_OK
	    || (rv = city_draw_init(&cd)) != HOTEL_OK
	    || (rv = hotel__dataset_new(&ds, "generate count=%zu seed=%llu",
	            count, (unsigned long long) seed))
	        != HOTEL_OK) {
		return (rv);
	}
	hotel__rng_seed(&rng, seed);
	for (size_t i = 0; i < count && rv == HOTEL_OK; i++) {
		hotel h;
		if (hotel__tick(&t, (uint32_t) i + 1)) {
			rv = t.rv;
			break;
		}
		make_hotel(&rng, &cd, (uint64_t) i + 1, &h, name, desc);
		rv = hotel__dataset_add(ds, &h);
	}
	if (rv != HOTEL_OK
	    || (rv = hotel__dataset_finish(ds, stop, NULL, 0)) != HOTEL_OK) {
		hotel__dataset_destroy(ds);
		return (rv);
	}
	*dsp = ds;
	return (HOTEL_OK);
}
