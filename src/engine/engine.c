/*
 * The engine: the dataset being served, swapped whole on reload.
 *
 * DESIGN
 * ------
 * The engine owns one reference to the current dataset. e_mtx guards the
 * pointer, and is held only to read it and take a reference
 * (hotel_engine_acquire) or to replace it (hotel_engine_swap): a handful of
 * instructions, never while building or querying. Taking the reference
 * under the same lock as the read is what makes this safe: a swap cannot
 * drop the engine's reference between a reader's load of the pointer and
 * its increment. Building a new dataset happens entirely outside the lock,
 * so queries continue on the old one, and none ever sees a half-built
 * dataset: it is published only once finished. The old dataset is freed by
 * whichever thread releases the last reference (often a query finishing
 * after the swap), never under the lock.
 */
#include <pthread.h>
#include <stdlib.h>

#include "dataset.h"

struct hotel_engine {
	pthread_mutex_t e_mtx;
	hotel_dataset  *e_current; /* guarded by e_mtx; one reference */
};

int
hotel_engine_open(hotel_dataset *initial, hotel_engine **enginep)
{
	hotel_engine *e;

	if (initial == NULL || enginep == NULL) {
		return (HOTEL_EINVAL);
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		return (HOTEL_ENOMEM);
	}
	if (pthread_mutex_init(&e->e_mtx, NULL) != 0) {
		free(e);
		return (HOTEL_ENOMEM);
	}
	e->e_current = initial;
	*enginep = e;
	return (HOTEL_OK);
}

void
hotel_engine_close(hotel_engine *e)
{
	if (e == NULL) {
		return;
	}
	hotel_dataset_release(e->e_current);
	pthread_mutex_destroy(&e->e_mtx);
	free(e);
}

hotel_dataset *
hotel_engine_acquire(hotel_engine *e)
{
	hotel_dataset *ds;

	pthread_mutex_lock(&e->e_mtx);
	ds = hotel_dataset_retain(e->e_current);
	pthread_mutex_unlock(&e->e_mtx);
	return (ds);
}

void
hotel_engine_swap(hotel_engine *e, hotel_dataset *next)
{
	hotel_dataset *old;

	pthread_mutex_lock(&e->e_mtx);
	old = e->e_current;
	e->e_current = next;
	pthread_mutex_unlock(&e->e_mtx);
	hotel_dataset_release(old); /* outside the lock: may free */
}

int
hotel_engine_reload_jsonl(hotel_engine *e, const char *path,
    const hotel_stop *stop, char *err, size_t errlen)
{
	hotel_dataset *ds;
	int            rv;

	if ((rv = hotel_dataset_load_jsonl(path, stop, &ds, err, errlen))
	    != HOTEL_OK) {
		return (rv);
	}
	hotel_engine_swap(e, ds);
	return (HOTEL_OK);
}

int
hotel_engine_reload_generate(
    hotel_engine *e, size_t count, uint64_t seed, const hotel_stop *stop)
{
	hotel_dataset *ds;
	int            rv;

	if ((rv = hotel_dataset_generate(count, seed, stop, &ds))
	    != HOTEL_OK) {
		return (rv);
	}
	hotel_engine_swap(e, ds);
	return (HOTEL_OK);
}
