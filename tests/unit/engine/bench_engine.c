/*
 * bench_engine: index build time and memory, and search latency, on
 * generated datasets.
 *
 *   build/bin/bench_engine [count ...]      (default: 100000 1000000)
 *
 * For each count: generation + index build time, the dataset's own memory
 * figure (Stats) and the process RSS growth, then p50/p99 latency over a
 * few thousand queries of each kind (single-threaded, warm): wall clock,
 * and this thread's CPU time, which a busy machine inflates less. The
 * queries have no deadline, except the "with stop" row: the prefix queries
 * again with a deadline an hour away and a cancel flag, as a server's calls
 * have, so that both are checked (every HOTEL_STOP_EVERY postings).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine/hotel.h"

#define RUNS 2000

static long
rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char  line[256];
	long  kb = -1;
	if (f == NULL) {
		return (-1);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
		}
	}
	fclose(f);
	return (kb);
}

/* CPU seconds (user + system) of the process so far, all threads. */
static double
cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
	    + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
}

/* This thread's CPU time in ns: unlike the wall clock, it does not count
 * the time the scheduler gives to other processes on a busy machine. */
static int64_t
thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static double
load1(void)
{
	double l[1] = { -1 };
	getloadavg(l, 1);
	return (l[0]);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
	return (x < y ? -1 : x > y);
}

static const char *one_word[] = { "paris", "spa", "grand", "pool", "tokyo",
	"beach", "garden", "sauna", "lisboa", "zurich", "sao", "malaga",
	"palace", "bellevue", "breakfast", "quiet", "berlin", "family",
	"bangkok", "sydney", "resort", "royal", "hotel", "inn", "parking",
	"cocktail", "rome", "kyoto", "cusco", "nairobi" };
static const char *two_words[] = { "grand palace", "spa paris",
	"pool barcelona", "hotel lisboa", "beach resort", "quiet garden",
	"royal tokyo", "breakfast london", "sauna helsinki", "family pool",
	"bellevue zurich", "cocktail bar", "old town", "hotel sao",
	"garden inn", "free wifi", "airport shuttle", "ocean view",
	"golden gate", "heart of" };
static const char *prefixes[] = { "par", "gr", "bel", "sp", "lis", "to", "be",
	"ho", "sa", "zu", "ma", "ro" };

typedef enum {
	Q_ONE,
	Q_TWO,
	Q_GEO,
	Q_FACETS,
	Q_PREFIX,
	Q_PREFIX_STOP,
	Q_EMPTY_RATING,
	Q_SUGGEST,
	Q_KINDS
} kind;
static const char *kind_names[Q_KINDS]
    = { "one word", "two words", "geo 5 km (no words)", "one word + facets",
	      "prefix (2-3 letters)", "prefix, with stop",
	      "empty query, sort=RATING", "suggest (2-3 letters)" };

static void
bench(size_t count)
{
	hotel_dataset          *ds;
	hotel_stats             st;
	long                    rss0 = rss_kb(), rss1;
	int64_t                 t0 = hotel_now_ns(), t1;
	double                  c0 = cpu_s(), c1;
	const hotel_world_city *cities;
	size_t                  n_cities;
	static int64_t          lat[RUNS], cpu[RUNS];
	uint64_t                sum_total = 0;
	atomic_bool             cancelled;
	int                     rv;

	if ((rv = hotel_dataset_generate(count, 42, NULL, &ds)) != HOTEL_OK) {
		fprintf(stderr, "generate: %s\n", hotel_strerror(rv));
		exit(1);
	}
	t1 = hotel_now_ns();
	c1 = cpu_s();
	rss1 = rss_kb();
	hotel_dataset_stats(ds, &st);
	printf("\n== %zu hotels (seed 42)\n", count);
	printf("generate + build: %.0f ms wall (Stats build_ms %.0f), %.0f ms "
	       "CPU; load average %.1f\n",
	    (t1 - t0) / 1e6, st.build_ms, (c1 - c0) * 1e3, load1());
	printf(
	    "memory: Stats %.1f MiB (index %.1f MiB), RSS growth %.1f MiB\n",
	    st.memory_bytes / 1048576.0, st.index_bytes / 1048576.0,
	    (rss1 - rss0) / 1024.0);
	printf("terms %llu, postings %llu, cities %llu, dataset id %s\n",
	    (unsigned long long) st.term_count,
	    (unsigned long long) st.posting_count,
	    (unsigned long long) st.city_count, st.dataset_id);
	printf("%-28s %9s %9s %9s %9s %9s\n", "query (page 10)", "p50 us",
	    "p99 us", "cpu p50", "cpu p99", "avg hits");

	cities = hotel_world_cities(&n_cities);
	atomic_init(&cancelled, false);
	for (int k = 0; k < Q_KINDS; k++) {
		sum_total = 0;
		for (int i = -200; i < RUNS; i++) {
			hotel_query       q = { 0 };
			hotel_result     *res;
			hotel_suggestion *sg;
			size_t            nsg;
			char              err[128];
			unsigned          j = (unsigned) (i + 200);
			int64_t           a, b, ca, cb;

			q.page_size = 10;
			q.stop.deadline_ns = HOTEL_DEADLINE_NONE;
			switch (k) {
			case Q_ONE:
				q.text = one_word[j % 30];
				break;
			case Q_TWO:
				q.text = two_words[j % 20];
				break;
			case Q_GEO: {
				const hotel_world_city *c
				    = &cities[(j * 7) % n_cities];
				q.has_geo = true;
				q.lat = c->latitude;
				q.lon = c->longitude;
				q.radius_km = 5;
				q.sort = HOTEL_SORT_DISTANCE;
				break;
			}
			case Q_FACETS:
				q.text = one_word[j % 30];
				q.facets = true;
				break;
			case Q_PREFIX:
				q.text = prefixes[j % 12];
				break;
			case Q_PREFIX_STOP:
				q.text = prefixes[j % 12];
				q.stop = (hotel_stop) { hotel_now_ns()
					    + 3600 * INT64_C(1000000000),
					hotel_stop_flag, &cancelled };
				break;
			case Q_EMPTY_RATING:
				q.sort = HOTEL_SORT_RATING;
				break;
			default:
				break;
			}
			ca = thread_cpu_ns();
			a = hotel_now_ns();
			if (k == Q_SUGGEST) {
				rv = hotel_suggest(ds, prefixes[j % 12], 10,
				    NULL, &sg, &nsg, err, sizeof(err));
				if (rv == HOTEL_OK) {
					sum_total += nsg;
					hotel_suggestions_free(sg);
				}
			} else {
				rv = hotel_search(
				    ds, &q, &res, err, sizeof(err));
				if (rv == HOTEL_OK) {
					sum_total += res->total;
					hotel_result_free(res);
				}
			}
			b = hotel_now_ns();
			cb = thread_cpu_ns();
			if (rv != HOTEL_OK) {
				fprintf(stderr, "query: %s\n", err);
				exit(1);
			}
			if (i >= 0) {
				lat[i] = b - a;
				cpu[i] = cb - ca;
			}
		}
		qsort(lat, RUNS, sizeof(lat[0]), cmp_i64);
		qsort(cpu, RUNS, sizeof(cpu[0]), cmp_i64);
		printf("%-28s %9.1f %9.1f %9.1f %9.1f %9.0f\n", kind_names[k],
		    lat[RUNS / 2] / 1e3, lat[RUNS * 99 / 100] / 1e3,
		    cpu[RUNS / 2] / 1e3, cpu[RUNS * 99 / 100] / 1e3,
		    (double) sum_total / (RUNS + 200));
	}
	printf("(load average at the end %.1f)\n", load1());
	hotel_dataset_release(ds);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		bench(100000);
		bench(1000000);
		return (0);
	}
	for (int i = 1; i < argc; i++) {
		bench((size_t) strtoull(argv[i], NULL, 10));
	}
	return (0);
}
