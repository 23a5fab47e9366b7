/*
 * JSON Lines: the loader and the writer.
 *
 * DESIGN
 * ------
 * The loader reads one line at a time (getline), parses it with jansson,
 * checks every field and adds the hotel to a dataset under construction;
 * the first bad line stops the load, and the half-built dataset is thrown
 * away, so a failed reload never touches the dataset being served. A stop
 * (deadline, cancel) is looked at every HOTEL_STOP_EVERY lines and through
 * the index build, and ends the load the same way. Ids are
 * remembered with their line numbers in a small hash set, so a duplicate
 * is reported on the line where it happens, naming the first one.
 *
 * The field names are proto3 JSON's (lowerCamelCase) with the proto names
 * accepted too, and 64-bit integers may be strings, as json_format writes
 * them. Fields that proto3 leaves out when zero are optional.
 *
 * The writer writes what the loader reads, numbers in their shortest form
 * that reads back to the same double, so a round trip is exact.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "stop.h"

/* ---- id set ----------------------------------------------------------------
 */

typedef struct id_set {
	struct id_line {
		uint64_t id; /* 0 = empty (ids are > 0) */
		size_t   line;
	} * slots;
	size_t n, cap; /* cap: power of two */
} id_set;

/* Adds id; if already there returns false with its line in *firstp.
 * Returns -1 when out of memory. */
static int
id_set_add(id_set *s, uint64_t id, size_t line, size_t *firstp)
{
	size_t j;

	if ((s->n + 1) * 2 > s->cap) {
		size_t          cap = s->cap ? s->cap * 2 : 1024;
		struct id_line *slots = calloc(cap, sizeof(*slots));
		if (slots == NULL) {
			return (-1);
		}
		for (size_t i = 0; i < s->cap; i++) {
			if (s->slots[i].id != 0) {
				j = hotel__mix64(s->slots[i].id) & (cap - 1);
				while (slots[j].id != 0) {
					j = (j + 1) & (cap - 1);
				}
				slots[j] = s->slots[i];
			}
		}
		free(s->slots);
		s->slots = slots;
		s->cap = cap;
	}
	j = hotel__mix64(id) & (s->cap - 1);
	while (s->slots[j].id != 0) {
		if (s->slots[j].id == id) {
			*firstp = s->slots[j].line;
			return (0);
		}
		j = (j + 1) & (s->cap - 1);
	}
	s->slots[j].id = id;
	s->slots[j].line = line;
	s->n++;
	return (1);
}

/* The length of at most max bytes of s that ends on a UTF-8 boundary, for
 * quoting input in messages. */
static int
cut(const char *s, int max)
{
	int n = 0;
	while (n < max && s[n] != '\0') {
		n++;
	}
	if (s[n] != '\0') {
		while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80) {
			n--;
		}
	}
	return (n);
}

/* ---- fields
 * ----------------------------------------------------------------- */

enum {
	F_ID,
	F_NAME,
	F_CITY,
	F_COUNTRY,
	F_LATITUDE,
	F_LONGITUDE,
	F_STARS,
	F_PRICE,
	F_RATING,
	F_REVIEWS,
	F_AMENITIES,
	F_DESCRIPTION,
	F_COUNT
};

static const struct {
	const char *json;  /* proto3 JSON name */
	const char *proto; /* proto field name */
	bool        required;
} fields[F_COUNT] = {
	[F_ID] = { "id", "id", true },
	[F_NAME] = { "name", "name", true },
	[F_CITY] = { "city", "city", true },
	[F_COUNTRY] = { "country", "country", true },
	[F_LATITUDE] = { "latitude", "latitude", false },
	[F_LONGITUDE] = { "longitude", "longitude", false },
	[F_STARS] = { "stars", "stars", true },
	[F_PRICE] = { "priceCents", "price_cents", false },
	[F_RATING] = { "rating", "rating", false },
	[F_REVIEWS] = { "reviewCount", "review_count", false },
	[F_AMENITIES] = { "amenities", "amenities", false },
	[F_DESCRIPTION] = { "description", "description", false },
};

/* Parses an integer given as a JSON integer, an integral real, or a
 * decimal string (optional '-'), into [min, max] as int64 or, with
 * is_u64, [0, UINT64_MAX]. On failure writes the problem into msg. */
static bool
get_int(json_t *v, bool is_u64, int64_t min, int64_t max, uint64_t *outp,
    char *msg, size_t msglen)
{
	bool     neg = false;
	uint64_t u = 0;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		neg = i < 0;
		u = neg ? (uint64_t) 0 - (uint64_t) i : (uint64_t) i;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d != floor(d) || fabs(d) >= 9.2e18) {
			snprintf(msg, msglen, "must be an integer");
			return (false);
		}
		neg = d < 0;
		u = (uint64_t) fabs(d);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (*s == '-') {
			neg = true;
			s++;
		}
		if (*s == '\0') {
			snprintf(msg, msglen, "not an integer: \"%.*s\"",
			    cut(json_string_value(v), 40),
			    json_string_value(v));
			return (false);
		}
		for (; *s != '\0'; s++) {
			if (*s < '0' || *s > '9'
			    || u > (UINT64_MAX - (uint64_t) (*s - '0')) / 10) {
				snprintf(msg, msglen,
				    "not an integer in range: \"%.*s\"",
				    cut(json_string_value(v), 40),
				    json_string_value(v));
				return (false);
			}
			u = u * 10 + (uint64_t) (*s - '0');
		}
	} else {
		snprintf(msg, msglen, "must be an integer or a string");
		return (false);
	}
	if (is_u64) {
		if (neg && u != 0) {
			snprintf(msg, msglen, "must be >= 0");
			return (false);
		}
		*outp = u;
		return (true);
	}
	if ((!neg && u > (uint64_t) max)
	    || (neg && u > (uint64_t) 0 - (uint64_t) min)) {
		snprintf(msg, msglen, "out of range");
		return (false);
	}
	*outp = neg ? (uint64_t) 0 - u : u;
	return (true);
}

/* Writes "name: problem" for field f into msg. Returns false. */
static bool __attribute__((format(printf, 4, 5)))
bad(char *msg, size_t msglen, int f, const char *fmt, ...)
{
	va_list ap;
	int     o = snprintf(msg, msglen, "%s: ", fields[f].json);

	va_start(ap, fmt);
	vsnprintf(msg + o, msglen - (size_t) o, fmt, ap);
	va_end(ap);
	return (false);
}

/* Sorts the object's members into vals by field: unknown fields, fields
 * given twice (under both names) and missing required ones are errors. */
static bool
match_fields(json_t *root, json_t *vals[F_COUNT], char *msg, size_t msglen)
{
	const char *key;
	json_t     *v;

	json_object_foreach(root, key, v)
	{
		int f;
		for (f = 0; f < F_COUNT; f++) {
			if (strcmp(key, fields[f].json) == 0
			    || strcmp(key, fields[f].proto) == 0) {
				break;
			}
		}
		if (f == F_COUNT) {
			snprintf(msg, msglen, "unknown field \"%.*s\"",
			    cut(key, 40), key);
			return (false);
		}
		if (vals[f] != NULL) {
			return (bad(msg, msglen, f, "given twice"));
		}
		vals[f] = v;
	}
	for (int f = 0; f < F_COUNT; f++) {
		if (fields[f].required && vals[f] == NULL) {
			return (bad(msg, msglen, f, "missing"));
		}
	}
	return (true);
}

/* Field f, when given, as a string (borrowed from the JSON value). */
static bool
get_string(json_t *const vals[F_COUNT], int f, const char **sp, char *msg,
    size_t msglen)
{
	if (vals[f] == NULL) {
		return (true);
	}
	if (!json_is_string(vals[f])) {
		return (bad(msg, msglen, f, "must be a string"));
	}
	*sp = json_string_value(vals[f]);
	return (true);
}

/* Field f, when given, as a number. */
static bool
get_number(
    json_t *const vals[F_COUNT], int f, double *dp, char *msg, size_t msglen)
{
	if (vals[f] == NULL) {
		return (true);
	}
	if (!json_is_number(vals[f])) {
		return (bad(msg, msglen, f, "must be a number"));
	}
	*dp = json_number_value(vals[f]);
	return (true);
}

/* Field f, when given, as an integer: see get_int(). */
static bool
get_integer(json_t *const vals[F_COUNT], int f, bool is_u64, int64_t min,
    int64_t max, uint64_t *up, char *msg, size_t msglen)
{
	char why[128];

	if (vals[f] == NULL) {
		return (true);
	}
	if (!get_int(vals[f], is_u64, min, max, up, why, sizeof(why))) {
		return (bad(msg, msglen, f, "%s", why));
	}
	return (true);
}

/* The amenities field, when given: an array of names. */
static bool
get_amenities(
    json_t *const vals[F_COUNT], uint32_t *ap, char *msg, size_t msglen)
{
	json_t *v;
	size_t  i;

	if (vals[F_AMENITIES] == NULL) {
		return (true);
	}
	if (!json_is_array(vals[F_AMENITIES])) {
		return (bad(
		    msg, msglen, F_AMENITIES, "must be an array of strings"));
	}
	json_array_foreach(vals[F_AMENITIES], i, v)
	{
		int a;
		if (!json_is_string(v)) {
			return (bad(msg, msglen, F_AMENITIES,
			    "must be an array of strings"));
		}
		if ((a = hotel_amenity_from_name(json_string_value(v))) < 0) {
			return (bad(msg, msglen, F_AMENITIES,
			    "unknown amenity \"%.*s\"",
			    cut(json_string_value(v), 40),
			    json_string_value(v)));
		}
		*ap |= HOTEL_AMENITY_BIT(a);
	}
	return (true);
}

/* Reads one line's object into *h (strings borrowed from root). Fields are
 * checked in a fixed order, so a line with several problems always gets
 * the same message. */
static bool
parse_hotel(json_t *root, hotel *h, char *msg, size_t msglen)
{
	json_t  *vals[F_COUNT] = { 0 };
	uint64_t id = 0, stars = 0, price = 0, reviews = 0;

	if (!match_fields(root, vals, msg, msglen)) {
		return (false);
	}
	memset(h, 0, sizeof(*h));
	h->description = "";
	if (!get_integer(vals, F_ID, true, 0, 0, &id, msg, msglen)
	    || !get_string(vals, F_NAME, &h->name, msg, msglen)
	    || !get_string(vals, F_CITY, &h->city, msg, msglen)
	    || !get_string(vals, F_COUNTRY, &h->country, msg, msglen)
	    || !get_string(vals, F_DESCRIPTION, &h->description, msg, msglen)
	    || !get_number(vals, F_LATITUDE, &h->latitude, msg, msglen)
	    || !get_number(vals, F_LONGITUDE, &h->longitude, msg, msglen)
	    || !get_integer(vals, F_STARS, false, INT32_MIN, INT32_MAX, &stars,
	        msg, msglen)
	    || !get_integer(vals, F_PRICE, false, INT64_MIN, INT64_MAX, &price,
	        msg, msglen)
	    || !get_number(vals, F_RATING, &h->rating, msg, msglen)
	    || !get_integer(
	        vals, F_REVIEWS, false, 0, UINT32_MAX, &reviews, msg, msglen)
	    || !get_amenities(vals, &h->amenities, msg, msglen)) {
		return (false);
	}
	h->id = id;
	h->stars = (int) (int64_t) stars;
	h->price_cents = (int64_t) price;
	h->review_count = (uint32_t) reviews;
	/* Ranges, with the same messages as hotel_dataset_from_array(). */
	return (hotel__hotel_check(h, msg, msglen) == HOTEL_OK);
}

static bool
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r'
		    && s[i] != '\n') {
			return (false);
		}
	}
	return (true);
}

/* Parses line number lineno (len bytes, not blank) and adds its hotel to
 * ds; ids has the ids of the lines before. */
static int
add_line(hotel_dataset *ds, id_set *ids, const char *line, size_t len,
    size_t lineno, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t      *root;
	hotel        h;
	char         msg[256];
	size_t       first;
	int          added, rv;

	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		return (hotel__err(HOTEL_EPARSE, err, errlen,
		    "line %zu: bad JSON: %s (column %d)", lineno, jerr.text,
		    jerr.column));
	}
	if (!json_is_object(root)) {
		rv = hotel__err(HOTEL_EPARSE, err, errlen,
		    "line %zu: not a JSON object", lineno);
	} else if (!parse_hotel(root, &h, msg, sizeof(msg))) {
		rv = hotel__err(
		    HOTEL_EPARSE, err, errlen, "line %zu: %s", lineno, msg);
	} else if ((added = id_set_add(ids, h.id, lineno, &first)) < 0) {
		rv = hotel__err(HOTEL_ENOMEM, err, errlen, "out of memory");
	} else if (added == 0) {
		rv = hotel__err(HOTEL_EPARSE, err, errlen,
		    "line %zu: id: duplicate id %llu (first on line %zu)",
		    lineno, (unsigned long long) h.id, first);
	} else if ((rv = hotel__dataset_add(ds, &h)) != HOTEL_OK) {
		rv = hotel__err(rv, err, errlen, "out of memory");
	}
	json_decref(root); /* after the add: h's strings point into it */
	return (rv);
}

/* Adds every line of f to ds, to the end of the file or until t stops. */
static int
read_lines(FILE *f, const char *name, hotel__ticker *t, hotel_dataset *ds,
    char *err, size_t errlen)
{
	id_set  ids = { 0 };
	char   *line = NULL;
	size_t  cap = 0, lineno = 0;
	ssize_t len;
	int     rv = HOTEL_OK;

	while (rv == HOTEL_OK && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (hotel__tick(t, (uint32_t) lineno)) {
			rv = hotel__err(
			    t->rv, err, errlen, "%s", hotel_strerror(t->rv));
		} else if (!blank(line, (size_t) len)) {
			rv = add_line(
			    ds, &ids, line, (size_t) len, lineno, err, errlen);
		}
	}
	/* getline() also stops on ENOMEM without setting the error flag:
	 * anything short of end of file is a failed read, never a dataset
	 * cut short. */
	if (rv == HOTEL_OK && (ferror(f) || !feof(f))) {
		rv = hotel__err(errno == ENOMEM ? HOTEL_ENOMEM : HOTEL_EIO,
		    err, errlen, "%s: read error after line %zu", name,
		    lineno);
	}
	free(line);
	free(ids.slots);
	return (rv);
}

int
hotel_dataset_read_jsonl(FILE *f, const char *name, const hotel_stop *stop,
    hotel_dataset **dsp, char *err, size_t errlen)
{
	hotel_dataset *ds;
	hotel__ticker  t;
	int            rv;

	if (f == NULL) {
		return (hotel__err(HOTEL_EINVAL, err, errlen, "NULL stream"));
	}
	if (name == NULL) {
		name = "(stream)";
	}
	hotel__ticker_init(&t, stop, NULL);
	if ((rv = hotel__ticker_poll(&t)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "%s", hotel_strerror(rv)));
	}
	if ((rv = hotel__dataset_new(&ds, "jsonl %s", name)) != HOTEL_OK) {
		return (hotel__err(rv, err, errlen, "out of memory"));
	}
	/* The line buffer and the id set are gone before the index builds. */
	if ((rv = read_lines(f, name, &t, ds, err, errlen)) != HOTEL_OK
	    || (rv = hotel__dataset_finish(ds, stop, err, errlen))
	        != HOTEL_OK) {
		hotel__dataset_destroy(ds);
		return (rv);
	}
	*dsp = ds;
	return (HOTEL_OK);
}

int
hotel_dataset_load_jsonl(const char *path, const hotel_stop *stop,
    hotel_dataset **dsp, char *err, size_t errlen)
{
	struct stat st;
	FILE       *f;
	int         fd;
	int         rv;

	if (path == NULL) {
		return (hotel__err(HOTEL_EINVAL, err, errlen, "NULL path"));
	}
	/* Non-blocking open, so a FIFO with no writer cannot hang the
	 * caller; then only regular files: a device (/dev/zero) or a pipe
	 * could feed one endless line until memory runs out. */
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		return (hotel__err(
		    HOTEL_EIO, err, errlen, "%s: %s", path, strerror(errno)));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return (hotel__err(
		    HOTEL_EIO, err, errlen, "%s: not a regular file", path));
	}
	if (fcntl(fd, F_SETFL, 0) != 0 || (f = fdopen(fd, "r")) == NULL) {
		rv = errno;
		close(fd);
		return (hotel__err(
		    HOTEL_EIO, err, errlen, "%s: %s", path, strerror(rv)));
	}
	rv = hotel_dataset_read_jsonl(f, path, stop, dsp, err, errlen);
	fclose(f);
	return (rv);
}

/* ---- writer
 * ----------------------------------------------------------------- */

static void
put_string(FILE *f, const char *s)
{
	putc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char) *s;
		switch (c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (c < 0x20) {
				fprintf(f, "\\u%04x", c);
			} else {
				putc(c, f);
			}
		}
	}
	putc('"', f);
}

/* The shortest %g form that reads back as d. */
static void
put_double(FILE *f, double d)
{
	char buf[32];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (strtod(buf, NULL) == d) {
			break;
		}
	}
	fputs(buf, f);
}

int
hotel_dataset_write_jsonl(const hotel_dataset *ds, FILE *f)
{
	for (size_t i = 0; i < ds->n; i++) {
		const hotel *h = &ds->hotels[i];
		bool         first = true;

		fprintf(f,
		    "{\"id\":\"%llu\",\"name\":", (unsigned long long) h->id);
		put_string(f, h->name);
		fputs(",\"city\":", f);
		put_string(f, h->city);
		fputs(",\"country\":", f);
		put_string(f, h->country);
		fputs(",\"latitude\":", f);
		put_double(f, h->latitude);
		fputs(",\"longitude\":", f);
		put_double(f, h->longitude);
		fprintf(f, ",\"stars\":%d,\"priceCents\":\"%lld\",\"rating\":",
		    h->stars, (long long) h->price_cents);
		put_double(f, h->rating);
		fprintf(f, ",\"reviewCount\":%u,\"amenities\":[",
		    (unsigned) h->review_count);
		for (int a = 0; a < HOTEL_AMENITY_COUNT; a++) {
			if (h->amenities & HOTEL_AMENITY_BIT(a)) {
				fprintf(f, "%s\"%s\"", first ? "" : ",",
				    hotel_amenity_name(a));
				first = false;
			}
		}
		fputs("],\"description\":", f);
		put_string(f, h->description);
		fputs("}\n", f);
		if (ferror(f)) {
			return (HOTEL_EIO);
		}
	}
	if (fflush(f) != 0 || ferror(f)) {
		return (HOTEL_EIO);
	}
	return (HOTEL_OK);
}
