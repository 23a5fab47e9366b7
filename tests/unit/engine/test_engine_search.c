/*
 * Search: BM25F ranking, filters, sorts, paging and tokens, facets,
 * deadlines and argument errors.
 */
#include <math.h>

#include "engine_test.h"

/* ---- BM25F on a hand-made dataset -------------------------------------- */

/*
 * Four hotels; the query "harbour" is in three of them:
 *
 *   id  name (len)               city    country  description (len)
 *   1   Harbour Inn (2)          Oslo    Norway   quiet rooms near the harbour
 * (5) 2   Grand Harbour Hotel (3)  Oslo    Norway   harbour views (2) 3   City
 * Lodge (2)           Bergen  Norway   close to the harbour harbour harbour
 * (6) 4   Forest Cabin (2)         Bergen  Norway   pine trees and silence (4)
 *
 * avglen: name 9/4 = 2.25, description 17/4 = 4.25 (city, country: 1).
 * BM25F, k1 = 1.2, b = 0.75, weights name 3, description 1:
 *   tf~(d) = sum_f w_f tf_f / (0.25 + 0.75 len_f / avglen_f)
 *   1: 3*1/(0.25+0.75*2/2.25) + 1*1/(0.25+0.75*5/4.25)
 *      = 3/0.916667 + 1/1.132353 = 3.272727 + 0.883117 = 4.155844
 *   2: 3*1/(0.25+0.75*3/2.25) + 1*1/(0.25+0.75*2/4.25)
 *      = 3/1.25 + 1/0.602941 = 2.4 + 1.658537 = 4.058537
 *   3: 1*3/(0.25+0.75*6/4.25) = 3/1.308824 = 2.292135
 * idf = ln(1 + (4 - 3 + 0.5)/(3 + 0.5)) = ln(1.428571) = 0.356675
 * score = idf * tf~ * 2.2 / (1.2 + tf~):
 *   1: 0.356675 * 4.155844 * 2.2 / 5.355844 = 0.608880
 *   2: 0.356675 * 4.058537 * 2.2 / 5.258537 = 0.605617
 *   3: 0.356675 * 2.292135 * 2.2 / 3.492135 = 0.515048
 * So: 1 (name + description) > 2 (longer name, shorter description) > 3
 * (three times, but only in the description).
 */
static const hotel bm25_hotels[] = {
	{ 1, "Harbour Inn", "Oslo", "Norway", "quiet rooms near the harbour",
	    59.9, 10.7, 3, 10000, 8.0, 10, 0 },
	{ 2, "Grand Harbour Hotel", "Oslo", "Norway", "harbour views", 59.9,
	    10.7, 3, 10000, 8.0, 10, 0 },
	{ 3, "City Lodge", "Bergen", "Norway",
	    "close to the harbour harbour harbour", 60.4, 5.3, 3, 10000, 8.0,
	    10, 0 },
	{ 4, "Forest Cabin", "Bergen", "Norway", "pine trees and silence",
	    60.4, 5.3, 3, 10000, 8.0, 10, 0 },
};

static double
ref_score(double tf_tilde, double n, double df)
{
	double idf = log(1 + (n - df + 0.5) / (df + 0.5));
	return (idf * tf_tilde * 2.2 / (1.2 + tf_tilde));
}

static void
test_bm25_order(void **state)
{
	hotel_dataset *ds;
	hotel_query    q = query("harbour");
	hotel_result  *res;
	char           err[128];
	(void) state;

	assert_int_equal(
	    hotel_dataset_from_array(bm25_hotels, 4, &ds, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->total, 3);
	assert_int_equal(res->hits[0].hotel->id, 1);
	assert_int_equal(res->hits[1].hotel->id, 2);
	assert_int_equal(res->hits[2].hotel->id, 3);
	assert_float_equal(res->hits[0].score,
	    ref_score(
	        3 / (0.25 + 0.75 * 2 / 2.25) + 1 / (0.25 + 0.75 * 5 / 4.25), 4,
	        3),
	    1e-5);
	assert_float_equal(res->hits[1].score,
	    ref_score(
	        3 / (0.25 + 0.75 * 3 / 2.25) + 1 / (0.25 + 0.75 * 2 / 4.25), 4,
	        3),
	    1e-5);
	assert_float_equal(res->hits[2].score,
	    ref_score(3 / (0.25 + 0.75 * 6 / 4.25), 4, 3), 1e-5);
	assert_float_equal(res->hits[0].score, 0.608880, 1e-5);
	hotel_result_free(res);

	/* The last word is a prefix: "harb" expands to "harbour" alone. */
	q = query("HARB");
	assert_hits(ds, &q, 1, 2, 3);
	/* AND: every word must match. */
	q = query("oslo harbour");
	assert_hits(ds, &q, 1, 2);
	q = query("harbour bergen");
	assert_hits(ds, &q, 3);
	q = query("harbour nowhere");
	assert_int_equal(run_ids(ds, &q, NULL, 0, NULL), 0);
	hotel_dataset_release(ds);
}

/* ---- the small world ------------------------------------------------------
 */

static void
test_words_and_prefix(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q;
	uint64_t       ids[16], total;
	(void) state;

	/* "paris": 101, 106, 111 have it in name and city (names of three
	 * tokens each: equal scores, so by id), 107 and 110 in the city
	 * only. */
	q = query("paris");
	assert_hits(ds, &q, 101, 106, 111, 107, 110);
	/* Accents and case fold both ways. */
	q = query("ZURICH");
	assert_hits(ds, &q, 104);
	q = query("zürich");
	assert_hits(ds, &q, 104);
	q = query("hotel sao");
	assert_int_equal(run_ids(ds, &q, ids, 16, &total), 0);
	q = query("pousada sao paulo");
	assert_hits(ds, &q, 103);
	q = query("malaga");
	assert_hits(ds, &q, 105);
	/* Prefix on the last word only: "par" is "paris" and "parking"
	 * (104's description). */
	q = query("par");
	assert_int_equal(run_ids(ds, &q, ids, 16, &total), 6);
	/* The rare "parking" (df 1, idf ln 8) outweighs "paris" (df 5, idf
	 * ln(1 + 6.5/5.5)) even in a name. */
	q = query("inn par");
	assert_hits(ds, &q, 104, 106, 111);
	q = query("par inn"); /* "par" is not a word */
	assert_int_equal(run_ids(ds, &q, NULL, 0, NULL), 0);
	q = query("inn parking");
	assert_hits(ds, &q, 104);
	q = query("pa budget");
	assert_int_equal(run_ids(ds, &q, ids, 16, &total), 0);
	/* "spa" is exact in the middle, so "spas" would not match. */
	q = query("spa gra");
	assert_hits(ds, &q, 102);
	/* Words from the country and the description. */
	q = query("japan");
	assert_int_equal(run_ids(ds, &q, ids, 16, &total), 2);
	q = query("onsen");
	assert_hits(ds, &q, 109);
	/* Repeated words count once. */
	q = query("paris paris");
	assert_hits(ds, &q, 101, 106, 111, 107, 110);
	hotel_dataset_release(ds);
}

static void
test_empty_query_matches_all_by_id(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q = query(NULL);
	(void) state;

	assert_hits(
	    ds, &q, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111);
	q = query("  !! ");
	assert_hits(
	    ds, &q, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111);
	hotel_dataset_release(ds);
}

static void
test_filters(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q;
	(void) state;

	q = query(NULL);
	q.min_stars = 4;
	assert_hits(ds, &q, 101, 102, 105, 107, 108, 109);
	q.min_stars = 5;
	assert_hits(ds, &q, 102, 107);

	q = query(NULL);
	q.max_price_cents = 16000; /* inclusive */
	assert_hits(ds, &q, 103, 105, 106, 110, 111);

	q = query(NULL);
	q.amenities_all = A(WIFI) | A(SPA);
	assert_hits(ds, &q, 101, 102, 107);
	q.amenities_all = A(BREAKFAST);
	assert_hits(ds, &q, 103, 109, 110);

	/* Geo: within 3 km of the centre of Paris; the Eiffel View is
	 * 4.2 km away. */
	q = query(NULL);
	q.has_geo = true;
	q.lat = 48.8566;
	q.lon = 2.3522;
	q.radius_km = 3;
	assert_hits(ds, &q, 101, 106, 107, 111);
	q.radius_km = 5;
	assert_hits(ds, &q, 101, 106, 107, 110, 111);
	/* London is 343.5 km from Paris. */
	q.radius_km = 340;
	assert_hits(ds, &q, 101, 106, 107, 110, 111);
	q.radius_km = 350;
	assert_hits(ds, &q, 101, 106, 107, 108, 110, 111);

	/* Filters with words, and all together. */
	q = query("paris");
	q.min_stars = 3;
	assert_hits(ds, &q, 101, 107, 110);
	q.max_price_cents = 20000;
	q.amenities_all = A(WIFI);
	q.has_geo = true;
	q.lat = 48.8566;
	q.lon = 2.3522;
	q.radius_km = 3;
	assert_hits(ds, &q, 101);
	hotel_dataset_release(ds);
}

/* The geo pre-filters (latitude band, longitude window) never drop a hotel
 * the haversine keeps: compare with brute force, around the antimeridian,
 * near a pole and at large radii. */
static void
test_geo_against_brute_force(void **state)
{
	static hotel   h[400];
	hotel_dataset *ds;
	char           names[400][16];
	char           err[128];
	(void) state;

	for (int i = 0; i < 400; i++) {
		snprintf(names[i], sizeof(names[i]), "H%d", i);
		h[i] = small_world_hotels[0];
		h[i].id = (uint64_t) i + 1;
		h[i].name = names[i];
		/* A grid: latitudes -88..88, longitudes around +-180. */
		h[i].latitude = -88.0 + (i % 20) * 9.2;
		h[i].longitude = (i / 20) % 2 ? 179.0 + (i / 40) * 0.1
		                              : -179.9 + (i / 40) * 0.1;
	}
	assert_int_equal(
	    hotel_dataset_from_array(h, 400, &ds, err, sizeof(err)), HOTEL_OK);
	const double centres[][2] = { { 0, 180 }, { 0, -180 }, { 10.4, 179.5 },
		{ 85, 0 }, { -88, 90 }, { 60, -179.95 }, { 45, 100 } };
	const double radii[] = { 1, 50, 300, 1500, 5000, 12000, 20100 };
	for (size_t c = 0; c < sizeof(centres) / sizeof(centres[0]); c++) {
		for (size_t k = 0; k < sizeof(radii) / sizeof(radii[0]); k++) {
			hotel_query q = query(NULL);
			uint64_t    total, want = 0;
			q.has_geo = true;
			q.lat = centres[c][0];
			q.lon = centres[c][1];
			q.radius_km = radii[k];
			for (int i = 0; i < 400; i++) {
				want += hotel_distance_km(q.lat, q.lon,
				            h[i].latitude, h[i].longitude)
				    <= radii[k];
			}
			run_ids(ds, &q, NULL, 0, &total);
			if (total != want) {
				fail_msg(
				    "centre %g,%g radius %g: %llu, want %llu",
				    q.lat, q.lon, q.radius_km,
				    (unsigned long long) total,
				    (unsigned long long) want);
			}
			q.text = "h"; /* the same through the word path */
			run_ids(ds, &q, NULL, 0, &total);
			assert_int_equal(total, want);
		}
	}
	hotel_dataset_release(ds);
}

static void
test_sorts(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q;
	hotel_result  *res;
	char           err[128];
	(void) state;

	/* Rating desc; 9.1 twice with 1200 reviews: by id; 8.7 three times:
	 * 800 reviews (104, 108 by id), then 500. */
	q = query(NULL);
	q.sort = HOTEL_SORT_RATING;
	assert_hits(
	    ds, &q, 109, 102, 107, 104, 108, 101, 103, 110, 105, 111, 106);
	q.sort = HOTEL_SORT_PRICE;
	assert_hits(
	    ds, &q, 111, 106, 103, 105, 110, 101, 104, 108, 109, 102, 107);
	/* Distance from Paris: 101 is at the centre. */
	q = query(NULL);
	q.sort = HOTEL_SORT_DISTANCE;
	q.has_geo = true;
	q.lat = 48.8566;
	q.lon = 2.3522;
	q.radius_km = 20000;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->total, 11);
	assert_int_equal(res->hits[0].hotel->id, 101);
	assert_float_equal(res->hits[0].distance_km, 0.0, 1e-9);
	for (size_t i = 1; i < res->n_hits; i++) {
		assert_true(
		    res->hits[i - 1].distance_km <= res->hits[i].distance_km);
		assert_float_equal(res->hits[i].distance_km,
		    hotel_distance_km(48.8566, 2.3522,
		        res->hits[i].hotel->latitude,
		        res->hits[i].hotel->longitude),
		    1e-9);
	}
	/* Paris hotels, then London (343.5 km), Zürich, ... */
	assert_int_equal(res->hits[5].hotel->id, 108);
	assert_int_equal(res->hits[6].hotel->id, 104);
	hotel_result_free(res);
	/* Words with another sort. */
	q = query("paris");
	q.sort = HOTEL_SORT_PRICE;
	assert_hits(ds, &q, 111, 106, 110, 101, 107);
	hotel_dataset_release(ds);
}

/* Pages of page_size a and of b concatenate to the same sequence, with no
 * duplicate and no gap. */
static void
check_paging(const hotel_dataset *ds, hotel_query q, uint32_t a, uint32_t b)
{
	uint64_t *seq[2];
	size_t    n[2] = { 0, 0 };
	uint64_t  total[2];
	size_t    count = hotel_dataset_count(ds);
	uint32_t  sizes[2] = { a, b };

	for (int k = 0; k < 2; k++) {
		char token[HOTEL_PAGE_TOKEN_MAX] = "";
		seq[k] = calloc(count, sizeof(uint64_t));
		for (int pages = 0;; pages++) {
			hotel_result *res;
			char          err[128];
			q.page_size = sizes[k];
			q.page_token = token;
			if (hotel_search(ds, &q, &res, err, sizeof(err))
			    != HOTEL_OK) {
				fail_msg("page %d: %s", pages, err);
			}
			total[k] = res->total;
			assert_true(res->n_hits <= sizes[k]);
			for (size_t i = 0; i < res->n_hits; i++) {
				assert_true(n[k] < count);
				seq[k][n[k]++] = res->hits[i].hotel->id;
			}
			strcpy(token, res->next_page_token);
			hotel_result_free(res);
			if (token[0] == '\0') {
				break;
			}
		}
		assert_int_equal(n[k], total[k]);
	}
	assert_int_equal(total[0], total[1]);
	assert_int_equal(n[0], n[1]);
	assert_memory_equal(seq[0], seq[1], n[0] * sizeof(uint64_t));
	/* No duplicates. */
	for (size_t i = 0; i < n[0]; i++) {
		const hotel *h;
		assert_int_equal(hotel_get(ds, seq[0][i], &h), HOTEL_OK);
		for (size_t j = i + 1; j < n[0] && j < i + 200; j++) {
			assert_true(seq[0][i] != seq[0][j]);
		}
	}
	{
		/* Sorting a copy finds duplicates anywhere. */
		uint64_t *c = malloc(n[0] * sizeof(uint64_t) + 1);
		memcpy(c, seq[0], n[0] * sizeof(uint64_t));
		for (size_t i = 1; i < n[0]; i++) {
			for (size_t j = i; j > 0 && c[j - 1] > c[j]; j--) {
				uint64_t t = c[j];
				c[j] = c[j - 1];
				c[j - 1] = t;
			}
		}
		for (size_t i = 1; i < n[0]; i++) {
			assert_true(c[i - 1] < c[i]);
		}
		free(c);
	}
	free(seq[0]);
	free(seq[1]);
}

static void
test_paging(void **state)
{
	hotel_dataset *ds;
	hotel_query    q;
	(void) state;

	ds = small_world();
	q = query(NULL);
	check_paging(ds, q, 3, 100);
	q = query("paris");
	check_paging(ds, q, 2, 100);
	q = query(NULL);
	q.sort = HOTEL_SORT_RATING;
	check_paging(ds, q, 1, 4);
	hotel_dataset_release(ds);

	assert_int_equal(hotel_dataset_generate(1500, 3, NULL, &ds), HOTEL_OK);
	q = query(NULL);
	check_paging(ds, q, 7, 100);
	q = query("hotel");
	check_paging(ds, q, 9, 100);
	q = query("par");
	check_paging(ds, q, 10, 33);
	q = query("spa");
	q.sort = HOTEL_SORT_PRICE;
	check_paging(ds, q, 7, 100);
	q = query(NULL);
	q.sort = HOTEL_SORT_RATING;
	check_paging(ds, q, 13, 100);
	q = query(NULL);
	q.sort = HOTEL_SORT_DISTANCE;
	q.has_geo = true;
	q.lat = 48.8566;
	q.lon = 2.3522;
	q.radius_km = 2000;
	check_paging(ds, q, 6, 100);
	hotel_dataset_release(ds);
}

static void
test_page_tokens_rejected(void **state)
{
	hotel_dataset *ds = small_world(), *other;
	hotel_query    q = query("paris");
	hotel_result  *res;
	char           token[HOTEL_PAGE_TOKEN_MAX], err[128];
	(void) state;

	q.page_size = 2;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_true(res->next_page_token[0] != '\0');
	strcpy(token, res->next_page_token);
	hotel_result_free(res);

	/* The right token works, also with another page size. */
	q.page_token = token;
	q.page_size = 10;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->n_hits, 3);
	assert_string_equal(res->next_page_token, "");
	hotel_result_free(res);

	/* Malformed. */
	const char *bad[] = { "x", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
		"0123456789abcdef0123456789abcdef",          /* no offset */
		"0123456789abcdef0123456789abcdef0",         /* offset 0 */
		"0123456789ABCDEF0123456789abcdef2",         /* upper case */
		"0123456789abcdef0123456789abcdef123456789", /* too long */
		"0123456789abcdef0123456789abcdef-2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		q.page_token = bad[i];
		expect_search_error(
		    ds, &q, HOTEL_EINVAL, "page_token: malformed");
	}
	/* From another query: other words, filters or sort. */
	q = query("paris inn");
	q.page_size = 2;
	q.page_token = token;
	expect_search_error(ds, &q, HOTEL_EINVAL, "different query");
	q = query("paris");
	q.page_size = 2;
	q.min_stars = 1;
	q.page_token = token;
	expect_search_error(ds, &q, HOTEL_EINVAL, "different query");
	q.min_stars = 0;
	q.sort = HOTEL_SORT_PRICE;
	expect_search_error(ds, &q, HOTEL_EINVAL, "different query");
	/* From a dataset since reloaded. */
	assert_int_equal(hotel_dataset_from_array(
	                     small_world_hotels, 10, &other, err, sizeof(err)),
	    HOTEL_OK);
	q = query("paris");
	q.page_size = 2;
	q.page_token = token;
	expect_search_error(other, &q, HOTEL_EINVAL, "stale");
	hotel_dataset_release(other);
	hotel_dataset_release(ds);
}

static void
test_facets(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q = query("paris");
	hotel_result  *res;
	char           err[128];
	(void) state;

	/* Over all hits, not only the page of one. */
	q.page_size = 1;
	q.facets = true;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_true(res->has_facets);
	assert_int_equal(res->n_hits, 1);
	assert_int_equal(res->stars_facet[1], 0);
	assert_int_equal(res->stars_facet[2], 2);
	assert_int_equal(res->stars_facet[3], 1);
	assert_int_equal(res->stars_facet[4], 1);
	assert_int_equal(res->stars_facet[5], 1);
	assert_int_equal(res->n_cities, 1);
	assert_string_equal(res->cities[0].city, "Paris");
	assert_string_equal(res->cities[0].country, "France");
	assert_int_equal(res->cities[0].count, 5);
	hotel_result_free(res);

	/* Every hotel; top 3 cities: Paris 5, Japan's two and the rest have
	 * one each, by name: Kyoto, London. */
	q = query(NULL);
	q.facets = true;
	q.top_cities = 3;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->n_cities, 3);
	assert_string_equal(res->cities[0].city, "Paris");
	assert_string_equal(res->cities[1].city, "Kyoto");
	assert_string_equal(res->cities[2].city, "London");
	assert_int_equal(res->cities[2].count, 1);
	assert_int_equal(res->stars_facet[2] + res->stars_facet[3]
	        + res->stars_facet[4] + res->stars_facet[5],
	    11);
	hotel_result_free(res);

	/* Without facets, none. */
	q = query(NULL);
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_false(res->has_facets);
	assert_int_equal(res->n_cities, 0);
	hotel_result_free(res);
	/* No hits: empty facets, no page, no token. */
	q = query("nowhere");
	q.facets = true;
	assert_int_equal(
	    hotel_search(ds, &q, &res, err, sizeof(err)), HOTEL_OK);
	assert_int_equal(res->total, 0);
	assert_int_equal(res->n_hits, 0);
	assert_int_equal(res->n_cities, 0);
	assert_string_equal(res->next_page_token, "");
	hotel_result_free(res);
	hotel_dataset_release(ds);
}

static void
test_deadline(void **state)
{
	hotel_dataset    *ds;
	hotel_query       q;
	hotel_suggestion *s;
	size_t            n;
	char              err[128];
	(void) state;

	assert_int_equal(hotel_dataset_generate(3000, 1, NULL, &ds), HOTEL_OK);
	q = query(NULL);
	q.stop.deadline_ns = hotel_now_ns() - 1;
	expect_search_error(ds, &q, HOTEL_EDEADLINE, "deadline");
	q = query("hotel spa");
	q.stop.deadline_ns = 1; /* long past */
	expect_search_error(ds, &q, HOTEL_EDEADLINE, "deadline");
	{
		hotel_stop past = { .deadline_ns = hotel_now_ns() - 1 };
		assert_int_equal(hotel_suggest(ds, "par", 5, &past, &s, &n,
		                     err, sizeof(err)),
		    HOTEL_EDEADLINE);
	}
	/* A deadline far away, or none (0 too), changes nothing. */
	q = query("hotel");
	q.stop.deadline_ns = hotel_now_ns() + 60 * 1000000000LL;
	{
		uint64_t ids[100], t1, t2;
		run_ids(ds, &q, ids, 100, &t1);
		q.stop.deadline_ns = 0;
		run_ids(ds, &q, ids, 100, &t2);
		assert_int_equal(t1, t2);
		assert_true(t1 > 0);
	}
	hotel_dataset_release(ds);
}

static void
test_deadline_mid_query(void **state)
{
	hotel_dataset *ds;
	hotel_query    q;
	int            expired = 0;
	(void) state;

	/* A deadline a few microseconds out stops a scan of 30k hotels part
	 * way (the clock is read every 1024 documents). */
	assert_int_equal(
	    hotel_dataset_generate(30000, 5, NULL, &ds), HOTEL_OK);
	for (int i = 0; i < 20; i++) {
		hotel_result *res;
		char          err[128];
		int           rv;
		q = query(NULL);
		q.sort = HOTEL_SORT_RATING;
		q.facets = true;
		q.stop.deadline_ns = hotel_now_ns() + 3000;
		rv = hotel_search(ds, &q, &res, err, sizeof(err));
		if (rv == HOTEL_OK) {
			hotel_result_free(res);
		} else {
			assert_int_equal(rv, HOTEL_EDEADLINE);
			expired++;
		}
	}
	assert_true(expired > 0);
	hotel_dataset_release(ds);
}

/* A prefix query stopped by its deadline leaves the thread's scratch
 * clean: the same queries afterwards give the same answers. */
static void
test_deadline_in_prefix_union(void **state)
{
	hotel_dataset *ds;
	const char    *texts[] = { "h", "s", "spa h", "b" };
	uint64_t       before[4], after[4], ids0[10], ids1[10];
	int            expired = 0;
	(void) state;

	assert_int_equal(
	    hotel_dataset_generate(30000, 6, NULL, &ds), HOTEL_OK);
	for (int i = 0; i < 4; i++) {
		hotel_query q = query(texts[i]);
		run_ids(ds, &q, NULL, 0, &before[i]);
		assert_true(before[i] > 0);
	}
	for (int i = 0; i < 40; i++) {
		hotel_query   q = query(texts[i % 4]);
		hotel_result *res;
		int           rv;
		q.stop.deadline_ns = hotel_now_ns() + 2000;
		rv = hotel_search(ds, &q, &res, NULL, 0);
		if (rv == HOTEL_OK) {
			hotel_result_free(res);
		} else {
			assert_int_equal(rv, HOTEL_EDEADLINE);
			expired++;
		}
	}
	assert_true(expired > 0);
	for (int i = 0; i < 4; i++) {
		hotel_query q = query(texts[i]);
		run_ids(ds, &q, NULL, 0, &after[i]);
		assert_int_equal(after[i], before[i]);
	}
	/* And the pages agree with a fresh thread's view: same ids. */
	{
		hotel_query q = query("h");
		q.page_size = 10;
		run_ids(ds, &q, ids0, 10, NULL);
		run_ids(ds, &q, ids1, 10, NULL);
		assert_memory_equal(ids0, ids1, sizeof(ids0));
	}
	hotel_dataset_release(ds);
}

static void
test_argument_errors(void **state)
{
	hotel_dataset *ds = small_world();
	hotel_query    q;
	hotel_result  *res;
	char           words[200];
	(void) state;

	q = query(NULL);
	q.page_size = 0;
	expect_search_error(ds, &q, HOTEL_EINVAL, "page_size");
	q.page_size = 101;
	expect_search_error(ds, &q, HOTEL_EINVAL, "page_size");
	q = query(NULL);
	q.min_stars = 6;
	expect_search_error(ds, &q, HOTEL_EINVAL, "min_stars");
	q.min_stars = -1;
	expect_search_error(ds, &q, HOTEL_EINVAL, "min_stars");
	q = query(NULL);
	q.max_price_cents = -1;
	expect_search_error(ds, &q, HOTEL_EINVAL, "max_price_cents");
	q = query(NULL);
	q.amenities_all = UINT32_C(1) << 31;
	expect_search_error(ds, &q, HOTEL_EINVAL, "amenities_all");
	q = query(NULL);
	q.sort = (hotel_sort) 99;
	expect_search_error(ds, &q, HOTEL_EINVAL, "sort");
	q = query(NULL);
	q.sort = HOTEL_SORT_DISTANCE;
	expect_search_error(ds, &q, HOTEL_EINVAL, "DISTANCE needs a geo");
	q = query(NULL);
	q.has_geo = true;
	q.lat = 91;
	q.radius_km = 1;
	expect_search_error(ds, &q, HOTEL_EINVAL, "lat:");
	q.lat = 0;
	q.lon = -181;
	expect_search_error(ds, &q, HOTEL_EINVAL, "lon:");
	q.lon = 0;
	q.radius_km = 0;
	expect_search_error(ds, &q, HOTEL_EINVAL, "radius_km");
	q.radius_km = NAN;
	expect_search_error(ds, &q, HOTEL_EINVAL, "radius_km");
	q.radius_km = INFINITY;
	expect_search_error(ds, &q, HOTEL_EINVAL, "radius_km");
	q = query(NULL);
	q.facets = true;
	q.top_cities = 1001;
	expect_search_error(ds, &q, HOTEL_EINVAL, "top_cities");
	words[0] = '\0';
	for (int i = 0; i < 33; i++) {
		strcat(words, "a ");
	}
	q = query(words);
	expect_search_error(ds, &q, HOTEL_EINVAL, "text: more than 32 words");
	words[strlen(words) - 4] = '\0'; /* 32 words is fine */
	q = query(words);
	assert_int_equal(hotel_search(ds, &q, &res, NULL, 0), HOTEL_OK);
	hotel_result_free(res);
	assert_int_equal(hotel_search(NULL, &q, &res, NULL, 0), HOTEL_EINVAL);
	assert_int_equal(hotel_search(ds, NULL, &res, NULL, 0), HOTEL_EINVAL);
	hotel_result_free(NULL);
	hotel_dataset_release(ds);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bm25_order),
		cmocka_unit_test(test_words_and_prefix),
		cmocka_unit_test(test_empty_query_matches_all_by_id),
		cmocka_unit_test(test_filters),
		cmocka_unit_test(test_geo_against_brute_force),
		cmocka_unit_test(test_sorts),
		cmocka_unit_test(test_paging),
		cmocka_unit_test(test_page_tokens_rejected),
		cmocka_unit_test(test_facets),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_deadline_mid_query),
		cmocka_unit_test(test_deadline_in_prefix_union),
		cmocka_unit_test(test_argument_errors),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
