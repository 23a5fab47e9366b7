/*
 * JSON Lines: the writer/loader round trip, and every kind of bad line.
 */
#include <unistd.h>

#include "engine_test.h"

static char tmpdir[] = "/tmp/engine-jsonl-XXXXXX";

static const char *
write_file(const char *name, const char *content)
{
	static char path[256];
	FILE       *f;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	return (path);
}

static int
setup(void **state)
{
	(void) state;
	return (mkdtemp(tmpdir) == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	char cmd[300];
	(void) state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return (system(cmd));
}

static void
assert_same_hotels(const hotel_dataset *a, const hotel_dataset *b)
{
	hotel_stats sa, sb;
	assert_int_equal(hotel_dataset_count(a), hotel_dataset_count(b));
	for (size_t i = 0; i < hotel_dataset_count(a); i++) {
		const hotel *x = hotel_dataset_at(a, i),
		            *y = hotel_dataset_at(b, i);
		assert_int_equal(x->id, y->id);
		assert_string_equal(x->name, y->name);
		assert_string_equal(x->city, y->city);
		assert_string_equal(x->country, y->country);
		assert_string_equal(x->description, y->description);
		assert_true(x->latitude == y->latitude);
		assert_true(x->longitude == y->longitude);
		assert_int_equal(x->stars, y->stars);
		assert_int_equal(x->price_cents, y->price_cents);
		assert_true(x->rating == y->rating);
		assert_int_equal(x->review_count, y->review_count);
		assert_int_equal(x->amenities, y->amenities);
	}
	hotel_dataset_stats(a, &sa);
	hotel_dataset_stats(b, &sb);
	assert_string_equal(sa.dataset_id, sb.dataset_id);
}

static void
test_round_trip(void **state)
{
	hotel_dataset *a, *b;
	char           path[300], err[256];
	FILE          *f;
	hotel_stats    st;
	(void) state;

	assert_int_equal(hotel_dataset_generate(3000, 5, NULL, &a), HOTEL_OK);
	snprintf(path, sizeof(path), "%s/rt.jsonl", tmpdir);
	f = fopen(path, "w");
	assert_int_equal(hotel_dataset_write_jsonl(a, f), HOTEL_OK);
	fclose(f);
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &b, err, sizeof(err)),
	    HOTEL_OK);
	assert_same_hotels(a, b);
	hotel_dataset_stats(b, &st);
	assert_non_null(strstr(st.source, "rt.jsonl"));
	hotel_dataset_release(b);
	hotel_dataset_release(a);

	/* Hand-made strings that need escaping survive too. */
	{
		hotel h[2];
		memcpy(h, small_world_hotels, sizeof(h));
		h[0].name = "Quote \" backslash \\ tab \t nl \n ctl \x01";
		h[1].description = "";
		assert_int_equal(
		    hotel_dataset_from_array(h, 2, &a, err, sizeof(err)),
		    HOTEL_OK);
		f = fopen(path, "w");
		assert_int_equal(hotel_dataset_write_jsonl(a, f), HOTEL_OK);
		fclose(f);
		assert_int_equal(
		    hotel_dataset_load_jsonl(path, NULL, &b, err, sizeof(err)),
		    HOTEL_OK);
		assert_same_hotels(a, b);
		hotel_dataset_release(a);
		hotel_dataset_release(b);
	}
}

static void
test_write_error(void **state)
{
	hotel_dataset *ds = small_world();
	FILE          *f = fopen("/dev/full", "w");
	(void) state;
	if (f == NULL) {
		skip();
	}
	setvbuf(f, NULL, _IONBF, 0);
	assert_int_equal(hotel_dataset_write_jsonl(ds, f), HOTEL_EIO);
	fclose(f);
	hotel_dataset_release(ds);
}

#define GOOD1                                                                 \
	"{\"id\": \"1\", \"name\": \"Hôtel Un\", \"city\": \"Paris\", "      \
	"\"country\": \"France\", \"latitude\": 48.85, \"longitude\": 2.35, " \
	"\"stars\": 3, \"priceCents\": \"12000\", \"rating\": 8.1, "          \
	"\"reviewCount\": 10, \"amenities\": [\"wifi\", \"spa\"], "           \
	"\"description\": \"Nice.\"}\n"
/* Numbers where proto3 JSON writes strings, snake_case names, enum-style
 * amenity names, zero fields left out. */
#define GOOD2                                                                 \
	"{\"id\": 2, \"name\": \"Two\", \"city\": \"Oslo\", \"country\": "    \
	"\"Norway\", \"stars\": 4, \"price_cents\": 9900, \"review_count\": " \
	"\"7\", \"amenities\": [\"AMENITY_POOL\", \"Gym\"]}\n"
#define GOOD3                                                                 \
	"{\"id\":\"18446744073709551615\",\"name\":\"Max\",\"city\":\"X\","   \
	"\"country\":\"Y\",\"stars\":\"5\",\"latitude\":-90,\"longitude\":"   \
	"180,"                                                                \
	"\"rating\":10}\n"

static void
test_good_file(void **state)
{
	hotel_dataset *ds;
	const hotel   *h;
	char           err[256];
	const char    *path
	    = write_file("good.jsonl", GOOD1 "\n   \n" GOOD2 GOOD3);
	(void) state;

	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(hotel_dataset_count(ds), 3);
	assert_int_equal(hotel_get(ds, 1, &h), HOTEL_OK);
	assert_string_equal(h->name, "Hôtel Un");
	assert_int_equal(h->price_cents, 12000);
	assert_int_equal(h->amenities, A(WIFI) | A(SPA));
	assert_float_equal(h->rating, 8.1, 1e-12);
	assert_int_equal(hotel_get(ds, 2, &h), HOTEL_OK);
	assert_int_equal(h->price_cents, 9900);
	assert_int_equal(h->review_count, 7);
	assert_int_equal(h->amenities, A(POOL) | A(GYM));
	assert_true(h->latitude == 0 && h->longitude == 0);
	assert_string_equal(h->description, "");
	assert_int_equal(hotel_get(ds, UINT64_MAX, &h), HOTEL_OK);
	assert_int_equal(h->stars, 5);
	hotel_dataset_release(ds);

	/* Empty file: an empty dataset. */
	path = write_file("empty.jsonl", "");
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, err, sizeof(err)),
	    HOTEL_OK);
	assert_int_equal(hotel_dataset_count(ds), 0);
	hotel_dataset_release(ds);
}

/* Line 4 is bad (line 2 is blank and still counts). */
static void
expect_bad(const char *line4, const char *msg)
{
	char           content[4096];
	char           err[256] = "";
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	const char    *path;

	snprintf(content, sizeof(content), "%s\n%s%s\n%s", GOOD1, GOOD2, line4,
	    GOOD3);
	path = write_file("bad.jsonl", content);
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, err, sizeof(err)),
	    HOTEL_EPARSE);
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
	if (strncmp(err, "line 4: ", 8) != 0 || strstr(err, msg) == NULL) {
		fail_msg("for %s got \"%s\", want \"line 4: ...%s...\"", line4,
		    err, msg);
	}
}

#define H(extra)                                                              \
	"{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", \"country\": "     \
	"\"K\", \"stars\": 3" extra "}"

static void
test_bad_lines(void **state)
{
	(void) state;
	expect_bad("{\"id\": \"9\", ", "bad JSON");
	expect_bad("not json", "bad JSON");
	expect_bad(H(", \"stars\": 4"), "bad JSON"); /* duplicate key */
	expect_bad("[1, 2]", "not a JSON object");
	expect_bad("{\"name\": \"N\", \"city\": \"C\", \"country\": \"K\", "
	           "\"stars\": 3}",
	    "id: missing");
	expect_bad("{\"id\": \"9\", \"city\": \"C\", \"country\": \"K\", "
	           "\"stars\": 3}",
	    "name: missing");
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\"}",
	    "stars: missing");
	expect_bad(H(", \"hotelName\": \"x\""), "unknown field \"hotelName\"");
	expect_bad(H(", \"priceCents\": 1, \"price_cents\": 2"),
	    "priceCents: given twice");
	/* Ill-typed. */
	expect_bad("{\"id\": \"nine\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "id: not an integer");
	expect_bad("{\"id\": true, \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "id: must be an integer");
	expect_bad("{\"id\": \"-5\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "id: must be >= 0");
	expect_bad("{\"id\": \"18446744073709551616\", \"name\": \"N\", "
	           "\"city\": \"C\", \"country\": \"K\", \"stars\": 3}",
	    "id: not an integer in range");
	expect_bad("{\"id\": \"0\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "id: must be greater than 0");
	expect_bad("{\"id\": \"9\", \"name\": 5, \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "name: must be a string");
	expect_bad("{\"id\": \"9\", \"name\": \"\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "name: empty");
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": null, "
	           "\"country\": \"K\", \"stars\": 3}",
	    "city: must be a string");
	expect_bad(H(", \"description\": 7"), "description: must be a string");
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": \"four\"}",
	    "stars: not an integer");
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3.5}",
	    "stars: must be an integer");
	expect_bad(
	    H(", \"latitude\": \"north\""), "latitude: must be a number");
	expect_bad(H(", \"longitude\": []"), "longitude: must be a number");
	expect_bad(H(", \"rating\": \"good\""), "rating: must be a number");
	expect_bad(
	    H(", \"priceCents\": {}"), "priceCents: must be an integer");
	expect_bad(H(", \"reviewCount\": \"5000000000\""),
	    "reviewCount: out of range");
	expect_bad(H(", \"reviewCount\": -1"), "reviewCount: out of range");
	expect_bad(H(", \"amenities\": \"wifi\""),
	    "amenities: must be an array of strings");
	expect_bad(H(", \"amenities\": [1]"),
	    "amenities: must be an array of strings");
	/* Out of range. */
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 7}",
	    "stars: must be 1..5, got 7");
	expect_bad("{\"id\": \"9\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 0}",
	    "stars: must be 1..5, got 0");
	expect_bad(
	    H(", \"latitude\": 95"), "latitude: must be -90..90, got 95");
	expect_bad(H(", \"longitude\": -181"),
	    "longitude: must be -180..180, got -181");
	expect_bad(H(", \"rating\": 10.1"), "rating: must be 0..10");
	expect_bad(H(", \"priceCents\": \"-5\""), "priceCents: must be >= 0");
	expect_bad(H(", \"amenities\": [\"wifi\", \"jacuzzi\"]"),
	    "amenities: unknown amenity \"jacuzzi\"");
	/* Duplicate id: line 4 repeats line 3's id 2. */
	expect_bad("{\"id\": \"2\", \"name\": \"N\", \"city\": \"C\", "
	           "\"country\": \"K\", \"stars\": 3}",
	    "id: duplicate id 2 (first on line 3)");
}

/* Messages quote input, cut on a UTF-8 boundary, and are cut whole when the
 * caller's buffer is small. */
static void
test_messages_stay_utf8(void **state)
{
	char           content[512], err[16];
	hotel_dataset *ds;
	const char    *path;
	(void) state;

	/* 39 ASCII bytes then "é": the 40-byte cut falls inside it. */
	snprintf(content, sizeof(content), H(", \"amenities\": [\"%s\"]") "\n",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9");
	path = write_file("utf8.jsonl", content);
	{
		char big[256];
		assert_int_equal(hotel_dataset_load_jsonl(
		                     path, NULL, &ds, big, sizeof(big)),
		    HOTEL_EPARSE);
		assert_non_null(strstr(big, "aaa\""));
		assert_null(strstr(big, "\xc3"));
	}
	/* "line 1: name: empty"? No: a 16-byte buffer cuts "é" whole. */
	snprintf(content, sizeof(content),
	    "{\"id\": 1, \"name\": \"N\", \"city\": \"C\", "
	    "\"country\": \"K\", \"stars\": 3, \"éé\": 1}\n");
	path = write_file("utf8b.jsonl", content);
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, err, sizeof(err)),
	    HOTEL_EPARSE);
	/* "line 1: unknown field \"éé\"" cut to 15 bytes. */
	for (size_t i = 0; err[i]; i++) {
		unsigned char c = (unsigned char) err[i];
		if (c >= 0xC0) {
			assert_true(
			    (((unsigned char) err[i + 1]) & 0xC0) == 0x80);
		}
	}
	assert_true(strlen(err) <= 15);
}

static void
test_io_errors(void **state)
{
	hotel_dataset *ds = (hotel_dataset *) 0x1;
	char           err[256];
	char           path[300];
	(void) state;

	snprintf(path, sizeof(path), "%s/missing.jsonl", tmpdir);
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, err, sizeof(err)),
	    HOTEL_EIO);
	assert_non_null(strstr(err, "missing.jsonl"));
	assert_non_null(strstr(err, "No such file"));
	/* A directory opens but cannot be read. */
	assert_int_equal(
	    hotel_dataset_load_jsonl(tmpdir, NULL, &ds, err, sizeof(err)),
	    HOTEL_EIO);
	assert_int_equal(
	    hotel_dataset_load_jsonl(NULL, NULL, &ds, err, sizeof(err)),
	    HOTEL_EINVAL);
	assert_int_equal(
	    hotel_dataset_read_jsonl(NULL, "x", NULL, &ds, err, sizeof(err)),
	    HOTEL_EINVAL);
	/* err may be NULL. */
	assert_int_equal(
	    hotel_dataset_load_jsonl(path, NULL, &ds, NULL, 0), HOTEL_EIO);
	assert_ptr_equal(ds, (hotel_dataset *) 0x1);
}

static void
test_failed_reload_keeps_serving(void **state)
{
	hotel_engine  *e;
	hotel_dataset *ds, *cur;
	hotel_stats    before, after;
	char           err[256];
	const char    *bad;
	(void) state;

	assert_int_equal(hotel_dataset_generate(200, 1, NULL, &ds), HOTEL_OK);
	hotel_dataset_stats(ds, &before);
	assert_int_equal(hotel_engine_open(ds, &e), HOTEL_OK);
	bad = write_file("reload-bad.jsonl",
	    GOOD1 "{\"id\": \"3\", \"name\": \"N\", \"city\": \"C\", "
	          "\"country\": \"K\", \"stars\": 9}\n");
	assert_int_equal(
	    hotel_engine_reload_jsonl(e, bad, NULL, err, sizeof(err)),
	    HOTEL_EPARSE);
	assert_string_equal(err, "line 2: stars: must be 1..5, got 9");
	cur = hotel_engine_acquire(e);
	hotel_dataset_stats(cur, &after);
	assert_string_equal(before.dataset_id, after.dataset_id);
	assert_int_equal(hotel_dataset_count(cur), 200);
	hotel_dataset_release(cur);
	/* A good one replaces it. */
	assert_int_equal(hotel_engine_reload_jsonl(e,
	                     write_file("reload-good.jsonl", GOOD1 GOOD2),
	                     NULL, err, sizeof(err)),
	    HOTEL_OK);
	cur = hotel_engine_acquire(e);
	assert_int_equal(hotel_dataset_count(cur), 2);
	hotel_dataset_release(cur);
	hotel_engine_close(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_messages_stay_utf8),
		cmocka_unit_test(test_io_errors),
		cmocka_unit_test(test_failed_reload_keeps_serving),
	};
	return (cmocka_run_group_tests(tests, setup, teardown));
}
