/*
 * Datasets: the generator and its world, distances, GetHotel, Stats,
 * Suggest, amenity names and error strings.
 */
#include <math.h>

#include "engine_test.h"

#define GOLDEN_ID_1000_42 "95597df97b7d98c5"

static char *
dump(const hotel_dataset *ds, size_t *lenp)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, lenp);
	assert_non_null(f);
	assert_int_equal(hotel_dataset_write_jsonl(ds, f), HOTEL_OK);
	fclose(f);
	return (buf);
}

static void
test_generator_deterministic(void **state)
{
	hotel_dataset *a, *b, *c;
	hotel_stats    sa, sb, sc;
	char          *da, *db;
	size_t         la, lb;
	(void) state;

	assert_int_equal(hotel_dataset_generate(2000, 7, NULL, &a), HOTEL_OK);
	assert_int_equal(hotel_dataset_generate(2000, 7, NULL, &b), HOTEL_OK);
	assert_int_equal(hotel_dataset_generate(2000, 8, NULL, &c), HOTEL_OK);
	da = dump(a, &la);
	db = dump(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(da, db, la);
	hotel_dataset_stats(a, &sa);
	hotel_dataset_stats(b, &sb);
	hotel_dataset_stats(c, &sc);
	assert_string_equal(sa.dataset_id, sb.dataset_id);
	assert_string_not_equal(sa.dataset_id, sc.dataset_id);
	free(da);
	free(db);
	hotel_dataset_release(a);
	hotel_dataset_release(b);
	hotel_dataset_release(c);

	/* Pinned: the same on every machine and in every build. If this
	 * changes, the generator's output changed (and with it every page
	 * token and benchmark figure): do it on purpose. */
	assert_int_equal(hotel_dataset_generate(1000, 42, NULL, &a), HOTEL_OK);
	hotel_dataset_stats(a, &sa);
	assert_string_equal(sa.dataset_id, GOLDEN_ID_1000_42);
	hotel_dataset_release(a);
}

static void
test_generator_arguments(void **state)
{
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	(void) state;
	assert_int_equal(
	    hotel_dataset_generate(0, 1, NULL, &ds), HOTEL_EINVAL);
	assert_int_equal(
	    hotel_dataset_generate(HOTEL_GENERATE_MAX + 1, 1, NULL, &ds),
	    HOTEL_EINVAL);
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	assert_int_equal(hotel_dataset_generate(1, 1, NULL, &ds), HOTEL_OK);
	assert_int_equal(hotel_dataset_count(ds), 1);
	hotel_dataset_release(ds);
}

static void
test_world_cities(void **state)
{
	size_t                  n;
	const hotel_world_city *c = hotel_world_cities(&n);
	int                     per[HOTEL_CONTINENT_COUNT] = { 0 };
	(void) state;

	assert_true(n >= 200);
	for (size_t i = 0; i < n; i++) {
		assert_true(c[i].latitude >= -90 && c[i].latitude <= 90);
		assert_true(c[i].longitude >= -180 && c[i].longitude <= 180);
		assert_true(c[i].weight >= 1 && c[i].weight <= 9);
		assert_true(c[i].cost_pct > 0);
		assert_true((int) c[i].continent >= 0
		    && c[i].continent < HOTEL_CONTINENT_COUNT);
		per[c[i].continent]++;
		for (size_t j = 0; j < i; j++) {
			/* Unique (name, country). */
			assert_false(strcmp(c[i].name, c[j].name) == 0
			    && strcmp(c[i].country, c[j].country) == 0);
		}
	}
	for (int k = 0; k < HOTEL_CONTINENT_COUNT; k++) {
		assert_non_null(hotel_continent_name(k));
		if (per[k] < 20) {
			fail_msg("%s has %d cities", hotel_continent_name(k),
			    per[k]);
		}
	}
	assert_null(hotel_continent_name(-1));
	assert_null(hotel_continent_name(HOTEL_CONTINENT_COUNT));
}

static const hotel_world_city *
find_city(const char *name, const char *country)
{
	size_t                  n;
	const hotel_world_city *c = hotel_world_cities(&n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(c[i].name, name) == 0
		    && strcmp(c[i].country, country) == 0) {
			return (&c[i]);
		}
	}
	return (NULL);
}

static void
test_generated_data_plausible(void **state)
{
	hotel_dataset *ds;
	size_t         n = 20000, accented = 0, continents = 0;
	int            seen[HOTEL_CONTINENT_COUNT] = { 0 };
	double         price_sum[6] = { 0 }, count[6] = { 0 };
	double         rating_sum[6] = { 0 };
	uint64_t       reviews_sum = 0;
	uint32_t      *reviews = malloc(n * sizeof(uint32_t));
	(void) state;

	assert_int_equal(hotel_dataset_generate(n, 99, NULL, &ds), HOTEL_OK);
	for (size_t i = 0; i < n; i++) {
		const hotel            *h = hotel_dataset_at(ds, i);
		const hotel_world_city *c = find_city(h->city, h->country);
		assert_int_equal(h->id, i + 1);
		assert_non_null(c);
		seen[c->continent] = 1;
		/* Within a few km of the centre. */
		assert_true(hotel_distance_km(c->latitude, c->longitude,
		                h->latitude, h->longitude)
		    < 7.5);
		assert_true(h->stars >= 1 && h->stars <= 5);
		assert_true(h->price_cents > 0 && h->price_cents % 100 == 0);
		assert_true(h->rating >= 0 && h->rating <= 10);
		assert_float_equal(
		    h->rating * 10, round(h->rating * 10), 1e-9);
		assert_true(h->name[0] != '\0' && h->description[0] != '\0');
		assert_true(strstr(h->description, h->city) != NULL);
		for (const char *p = h->name; *p; p++) {
			if ((unsigned char) *p >= 0x80) {
				accented++;
				break;
			}
		}
		price_sum[h->stars] += (double) h->price_cents;
		rating_sum[h->stars] += h->rating;
		count[h->stars]++;
		reviews[i] = h->review_count;
		reviews_sum += h->review_count;
	}
	for (int k = 0; k < HOTEL_CONTINENT_COUNT; k++) {
		continents += seen[k];
	}
	assert_int_equal(continents, 6);
	/* Some names have accents: "Hôtel", "São Paulo", "Zürich". */
	assert_true(accented > n / 20);
	/* Prices and ratings rise with the stars. */
	for (int s = 2; s <= 5; s++) {
		assert_true(count[s] > 0);
		assert_true(
		    price_sum[s] / count[s] > price_sum[s - 1] / count[s - 1]);
		assert_true(rating_sum[s] / count[s]
		    > rating_sum[s - 1] / count[s - 1]);
	}
	/* Review counts are skewed: the mean is well above the median. */
	{
		size_t below = 0;
		double mean = (double) reviews_sum / (double) n;
		for (size_t i = 0; i < n; i++) {
			below += reviews[i] < mean;
		}
		assert_true(below > n * 6 / 10);
	}
	free(reviews);
	hotel_dataset_release(ds);
}

static double
ref_haversine(double lat1, double lon1, double lat2, double lon2)
{
	double r = 3.14159265358979323846 / 180;
	double a = pow(sin((lat2 - lat1) * r / 2), 2)
	    + cos(lat1 * r) * cos(lat2 * r)
	        * pow(sin((lon2 - lon1) * r / 2), 2);
	return (6371.0088 * 2 * atan2(sqrt(a), sqrt(1 - a)));
}

static void
test_distance(void **state)
{
	(void) state;
	/* Known pairs (great circle on the mean-radius sphere). */
	assert_float_equal(
	    hotel_distance_km(48.8566, 2.3522, 51.5074, -0.1278), 343.5, 0.5);
	assert_float_equal(
	    hotel_distance_km(40.7128, -74.0060, 34.0522, -118.2437), 3936,
	    4.0);
	assert_float_equal(
	    hotel_distance_km(-33.8688, 151.2093, -37.8136, 144.9631), 713.8,
	    1.0);
	assert_float_equal(hotel_distance_km(10, 20, 10, 20), 0, 1e-12);
	/* Antipodes and the antimeridian. */
	assert_float_equal(hotel_distance_km(0, 0, 0, 180),
	    3.14159265358979 * HOTEL_EARTH_RADIUS_KM, 1e-6);
	assert_float_equal(hotel_distance_km(0, 179.9, 0, -179.9),
	    hotel_distance_km(0, 0, 0, 0.2), 1e-9);
	/* Against a reference over many pairs: within 0.1%. */
	for (uint64_t i = 0; i < 10000; i++) {
		double lat1 = -90 + (double) (i * 7919 % 18000) / 100.0;
		double lon1 = -180 + (double) (i * 104729 % 36000) / 100.0;
		double lat2 = -90 + (double) (i * 1299709 % 18000) / 100.0;
		double lon2 = -180 + (double) (i * 15485863 % 36000) / 100.0;
		double d = hotel_distance_km(lat1, lon1, lat2, lon2);
		double want = ref_haversine(lat1, lon1, lat2, lon2);
		assert_true(fabs(d - want) <= 0.001 * want + 1e-9);
	}
}

static void
test_get_and_stats(void **state)
{
	hotel_dataset *ds = small_world();
	const hotel   *h = (const hotel *) 0x1;
	hotel_stats    st;
	(void) state;

	assert_int_equal(hotel_get(ds, 104, &h), HOTEL_OK);
	assert_string_equal(h->name, "Zürich Lake Inn");
	assert_int_equal(h->stars, 3);
	assert_int_equal(hotel_get(ds, 101, &h), HOTEL_OK);
	assert_int_equal(hotel_get(ds, 111, &h), HOTEL_OK);
	h = (const hotel *) 0x1;
	assert_int_equal(hotel_get(ds, 100, &h), HOTEL_ENOTFOUND);
	assert_int_equal(hotel_get(ds, 112, &h), HOTEL_ENOTFOUND);
	assert_int_equal(hotel_get(ds, 0, &h), HOTEL_ENOTFOUND);
	assert_int_equal(hotel_get(ds, UINT64_MAX, &h), HOTEL_ENOTFOUND);
	assert_ptr_equal(h, (const hotel *) 0x1);
	assert_int_equal(hotel_dataset_count(ds), 11);
	assert_int_equal(hotel_dataset_at(ds, 0)->id, 101);
	assert_int_equal(hotel_dataset_at(ds, 10)->id, 111);
	assert_null(hotel_dataset_at(ds, 11));

	hotel_dataset_stats(ds, &st);
	assert_int_equal(st.hotel_count, 11);
	assert_int_equal(strlen(st.dataset_id), 16);
	assert_int_equal(strspn(st.dataset_id, "0123456789abcdef"), 16);
	assert_true(st.build_ms >= 0);
	assert_true(st.loaded_at_unix_ms > 1600000000000LL);
	assert_true(st.index_bytes > 0);
	assert_true(st.memory_bytes > st.index_bytes);
	assert_true(st.term_count > 30);
	assert_true(st.posting_count >= st.term_count);
	assert_int_equal(st.city_count, 7);
	assert_string_equal(st.source, "array n=11");
	hotel_dataset_release(ds);

	assert_int_equal(hotel_dataset_generate(500, 3, NULL, &ds), HOTEL_OK);
	hotel_dataset_stats(ds, &st);
	assert_string_equal(st.source, "generate count=500 seed=3");
	assert_int_equal(st.hotel_count, 500);
	/* Memory grows with the data. */
	{
		hotel_dataset *big;
		hotel_stats    sb;
		assert_int_equal(
		    hotel_dataset_generate(5000, 3, NULL, &big), HOTEL_OK);
		hotel_dataset_stats(big, &sb);
		assert_true(sb.memory_bytes > 5 * st.memory_bytes);
		hotel_dataset_release(big);
	}
	hotel_dataset_release(ds);
}

static void
test_from_array_errors(void **state)
{
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	hotel          h[2];
	char           err[256];
	(void) state;

#define BAD(field, value, msg)                                                \
	do {                                                                  \
		memcpy(h, small_world_hotels, sizeof(h));                     \
		h[1].field = value;                                           \
		assert_int_equal(                                             \
		    hotel_dataset_from_array(h, 2, &ds, err, sizeof(err)),    \
		    HOTEL_EINVAL);                                            \
		if (strstr(err, msg) == NULL) {                               \
			fail_msg("\"%s\" lacks \"%s\"", err, msg);            \
		}                                                             \
	} while (0)

	BAD(id, 0, "hotel[1]: id: must be greater than 0");
	BAD(name, "", "hotel[1]: name: empty");
	BAD(name, NULL, "hotel[1]: name: empty");
	BAD(city, "", "city: empty");
	BAD(country, NULL, "country: empty");
	BAD(latitude, 90.5, "latitude: must be -90..90, got 90.5");
	BAD(latitude, NAN, "latitude");
	BAD(longitude, -180.5, "longitude: must be -180..180");
	BAD(stars, 0, "stars: must be 1..5, got 0");
	BAD(stars, 6, "stars: must be 1..5, got 6");
	BAD(price_cents, -1, "priceCents: must be >= 0");
	BAD(rating, 10.5, "rating: must be 0..10");
	BAD(amenities, UINT32_C(1) << 30, "amenities: unknown bits");
	BAD(id, small_world_hotels[0].id, "duplicate id 105");
#undef BAD
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	assert_int_equal(
	    hotel_dataset_from_array(NULL, 1, &ds, err, sizeof(err)),
	    HOTEL_EINVAL);
	/* An empty dataset is allowed, and answers nothing. */
	assert_int_equal(
	    hotel_dataset_from_array(NULL, 0, &ds, err, sizeof(err)),
	    HOTEL_OK);
	{
		hotel_query       q = query(NULL);
		uint64_t          total;
		hotel_suggestion *s;
		size_t            n;
		assert_int_equal(run_ids(ds, &q, NULL, 0, &total), 0);
		q = query("x");
		assert_int_equal(run_ids(ds, &q, NULL, 0, &total), 0);
		assert_int_equal(
		    hotel_suggest(ds, "x", 5, NULL, &s, &n, err, sizeof(err)),
		    HOTEL_OK);
		assert_int_equal(n, 0);
	}
	hotel_dataset_release(ds);
	hotel_dataset_release(NULL);
}

static void
check_suggest(const hotel_dataset *ds, const char *prefix, size_t limit,
    size_t want_n, const char *const *want_text,
    const hotel_suggest_kind *want_kind)
{
	hotel_suggestion *s;
	size_t            n;
	char              err[128];

	assert_int_equal(
	    hotel_suggest(ds, prefix, limit, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_OK);
	if (n != want_n) {
		fail_msg("suggest \"%s\": %zu results, want %zu", prefix, n,
		    want_n);
	}
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(s[i].text, want_text[i]);
		assert_int_equal(s[i].kind, want_kind[i]);
		if (i > 0) {
			assert_true(s[i - 1].weight >= s[i].weight);
		}
	}
	hotel_suggestions_free(s);
}

static void
test_suggest(void **state)
{
	hotel_dataset    *ds = small_world();
	hotel_suggestion *s = (hotel_suggestion *) 0x1;
	size_t            n = 77;
	char              err[128];
	(void) state;

	/* The city of Paris weighs the sum of its hotels' reviews,
	 * 500 + 90 + 1200 + 0 + 150 = 1940; "Hôtel Bellevue Paris" matches at
	 * its third word (500); the two "Paris Budget Inn" are one, with the
	 * larger review count (150, id 111). */
	{
		const char *const t[]
		    = { "Paris", "Hôtel Bellevue Paris", "Paris Budget Inn" };
		const hotel_suggest_kind k[] = { HOTEL_SUGGEST_CITY,
			HOTEL_SUGGEST_HOTEL, HOTEL_SUGGEST_HOTEL };
		check_suggest(ds, "par", 10, 3, t, k);
		check_suggest(ds, "PÂR", 10, 3, t, k);
		check_suggest(ds, "par", 2, 2, t, k);
		assert_int_equal(hotel_suggest(ds, "paris b", 5, NULL, &s, &n,
		                     err, sizeof(err)),
		    HOTEL_OK);
		assert_int_equal(n, 1);
		assert_int_equal(s[0].hotel_id, 111);
		assert_int_equal(s[0].weight, 150);
		assert_string_equal(s[0].city, "Paris");
		assert_string_equal(s[0].country, "France");
		hotel_suggestions_free(s);
		assert_int_equal(hotel_suggest(ds, "par", 1, NULL, &s, &n, err,
		                     sizeof(err)),
		    HOTEL_OK);
		assert_int_equal(s[0].weight, 1940);
		assert_int_equal(s[0].hotel_id, 0);
		hotel_suggestions_free(s);
	}
	/* Equal weights (800): the city comes first. */
	{
		const char *const t[] = { "Zürich", "Zürich Lake Inn" };
		const hotel_suggest_kind k[]
		    = { HOTEL_SUGGEST_CITY, HOTEL_SUGGEST_HOTEL };
		check_suggest(ds, "zur", 10, 2, t, k);
		check_suggest(ds, "Zü", 10, 2, t, k);
	}
	/* Word starts anywhere in the name; by review count. */
	{
		const char *const t[]
		    = { "London Bridge Hotel", "Málaga Beach Hotel",
			      "Hôtel Bellevue Paris", "Eiffel View Hotel" };
		const hotel_suggest_kind k[]
		    = { HOTEL_SUGGEST_HOTEL, HOTEL_SUGGEST_HOTEL,
			      HOTEL_SUGGEST_HOTEL, HOTEL_SUGGEST_HOTEL };
		check_suggest(ds, "hot", 10, 4, t, k);
		check_suggest(ds, "hôtel", 10, 4, t, k);
	}
	/* Several words; a trailing space ends the word. */
	{
		const char *const        t[] = { "Grand Palace Tokyo" };
		const hotel_suggest_kind k[] = { HOTEL_SUGGEST_HOTEL };
		check_suggest(ds, "grand pal", 10, 1, t, k);
		check_suggest(ds, "grand ", 10, 1, t, k);
		check_suggest(ds, "palace", 10, 1, t, k);
		check_suggest(ds, "gran ", 10, 0, NULL, NULL);
		/* Both weigh 300: the city first. */
		check_suggest(ds, "sao p", 10, 2,
		    (const char *const[]) { "São Paulo", "Pousada São Paulo" },
		    (const hotel_suggest_kind[]) {
		        HOTEL_SUGGEST_CITY, HOTEL_SUGGEST_HOTEL });
		/* A trailing separator ends the word, which may end the
		 * name. */
		check_suggest(ds, "tokyo ", 10, 2,
		    (const char *const[]) { "Tokyo", "Grand Palace Tokyo" },
		    (const hotel_suggest_kind[]) {
		        HOTEL_SUGGEST_CITY, HOTEL_SUGGEST_HOTEL });
	}
	check_suggest(ds, "xyz", 10, 0, NULL, NULL);
	/* No words: nothing, not an error. */
	assert_int_equal(
	    hotel_suggest(ds, " !! ", 10, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(n, 0);
	assert_null(s);
	/* Errors. */
	s = (hotel_suggestion *) 0x1;
	assert_int_equal(
	    hotel_suggest(ds, "par", 0, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_EINVAL);
	assert_non_null(strstr(err, "limit"));
	assert_int_equal(hotel_suggest(ds, "par", HOTEL_SUGGEST_MAX + 1, NULL,
	                     &s, &n, err, sizeof(err)),
	    HOTEL_EINVAL);
	assert_int_equal(
	    hotel_suggest(ds, NULL, 5, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_EINVAL);
	assert_ptr_equal(s, (hotel_suggestion *) 0x1);
	hotel_suggestions_free(NULL);
	hotel_dataset_release(ds);
}

static void
test_suggest_generated(void **state)
{
	hotel_dataset    *ds;
	hotel_suggestion *s;
	size_t            n;
	char              err[128];
	(void) state;

	assert_int_equal(
	    hotel_dataset_generate(5000, 11, NULL, &ds), HOTEL_OK);
	assert_int_equal(
	    hotel_suggest(ds, "s", 100, NULL, &s, &n, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(n, 100);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			/* Deduplicated. */
			assert_false(s[i].kind == s[j].kind
			    && strcmp(s[i].text, s[j].text) == 0
			    && strcmp(s[i].country, s[j].country) == 0);
		}
		if (i > 0) {
			assert_true(s[i - 1].weight >= s[i].weight);
		}
	}
	hotel_suggestions_free(s);
	hotel_dataset_release(ds);
}

static void
test_names_and_errors(void **state)
{
	(void) state;
	for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
		const char *name = hotel_amenity_name(a);
		char        up[64] = "AMENITY_";
		assert_non_null(name);
		assert_int_equal(hotel_amenity_from_name(name), a);
		for (size_t i = 0; name[i]; i++) {
			up[8 + i] = (char) (name[i] >= 'a' && name[i] <= 'z'
			        ? name[i] - 32
			        : name[i]);
			up[9 + i] = '\0';
		}
		assert_int_equal(hotel_amenity_from_name(up), a);
		assert_int_equal(hotel_amenity_from_name(up + 8), a);
	}
	assert_int_equal(HOTEL_AMENITY_COUNT, 18);
	assert_string_equal(hotel_amenity_name(HOTEL_AMENITY_WIFI), "wifi");
	assert_string_equal(hotel_amenity_name(HOTEL_AMENITY_AIR_CONDITIONING),
	    "air_conditioning");
	assert_null(hotel_amenity_name(-1));
	assert_null(hotel_amenity_name(HOTEL_AMENITY_COUNT));
	assert_int_equal(hotel_amenity_from_name("jacuzzi"), -1);
	assert_int_equal(hotel_amenity_from_name(""), -1);
	assert_int_equal(hotel_amenity_from_name(NULL), -1);

	assert_string_equal(hotel_strerror(HOTEL_OK), "ok");
	assert_string_equal(
	    hotel_strerror(HOTEL_EDEADLINE), "deadline exceeded");
	assert_string_equal(hotel_strerror(HOTEL_EPARSE), "parse error");
	assert_string_equal(hotel_strerror(999), "unknown error");
	assert_string_equal(hotel_strerror(-1), "unknown error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generator_deterministic),
		cmocka_unit_test(test_generator_arguments),
		cmocka_unit_test(test_world_cities),
		cmocka_unit_test(test_generated_data_plausible),
		cmocka_unit_test(test_distance),
		cmocka_unit_test(test_get_and_stats),
		cmocka_unit_test(test_from_array_errors),
		cmocka_unit_test(test_suggest),
		cmocka_unit_test(test_suggest_generated),
		cmocka_unit_test(test_names_and_errors),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
