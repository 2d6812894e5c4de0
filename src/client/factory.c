/*
 * factory.c — BucketFactory, SingleBucketFactory, the keyed factory and the
 * Leaker thread.
 *
 * Buckets are registered under a key in a small array guarded by a
 * recursive mutex (route callbacks look up and create under it).  The leaker
 * copies the list under that mutex and leaks outside it, holding leak_lock
 * for the pass so that dispose never closes a bucket being leaked.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry
{
	char	   *key;
	pyrate_bucket *bucket;
	bool		leak;
} entry;

struct pyrate_factory
{
	pthread_mutex_t mutex;		/* recursive; guards entries and the leaker fields */
	pyrate_route_fn route;
	pyrate_wrap_fn wrap;
	void	   *user;
	pyrate_clock *clock;
	int64_t		leak_interval;
	entry	   *entries;
	size_t		n;
	size_t		cap;
	/* the keyed factory */
	pyrate_make_bucket_fn make;
	void	   *make_user;
	void	   *owned;			/* released with the factory, by release_owned */
	void		(*release_owned) (void *);
	/* SingleBucketFactory: its bucket, read without the lock (NULL once disposed) */
	pyrate_bucket *single;
	/* the leaker */
	pthread_mutex_t leak_lock;	/* held for a leak pass */
	pthread_cond_t wake;
	bool		leaker_started;
	bool		stopping;
	pthread_t	leaker;
};

static void *
leaker_main(void *arg)
{
	pyrate_factory *f = arg;

	pthread_mutex_lock(&f->mutex);
	while (!f->stopping)
	{
		struct timespec until;
		pyrate_bucket **batch = NULL;
		size_t		nb = 0;
		size_t		i;
		int64_t		now;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += f->leak_interval / 1000;
		until.tv_nsec += (f->leak_interval % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000)
		{
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!f->stopping && pthread_cond_timedwait(&f->wake, &f->mutex, &until) != ETIMEDOUT)
			;
		if (f->stopping)
			break;
		pthread_mutex_unlock(&f->mutex);

		pthread_mutex_lock(&f->leak_lock);
		pthread_mutex_lock(&f->mutex);
		if (f->n > 0 && (batch = malloc(f->n * sizeof(pyrate_bucket *))))
			for (i = 0; i < f->n; i++)
				if (f->entries[i].leak)
					batch[nb++] = f->entries[i].bucket;
		pthread_mutex_unlock(&f->mutex);
		/* a clock failing, or a bucket failing to leak, only delays its leak */
		if (pyrate_clock_now(f->clock, &now, NULL) == PYRATE_OK)
			for (i = 0; i < nb; i++)
				pyrate_leak(batch[i], now, NULL, NULL);
		free(batch);
		pthread_mutex_unlock(&f->leak_lock);
		pthread_mutex_lock(&f->mutex);
	}
	pthread_mutex_unlock(&f->mutex);
	return NULL;
}

pyrate_factory *
pyrate_factory_new(const pyrate_factory_options *opts, pyrate_error *err)
{
	pyrate_factory *f;
	pthread_mutexattr_t attr;
	pthread_condattr_t cattr;

	if (!opts || !opts->route)
	{
		pyr_fail(err, PYRATE_EINVAL, "a factory needs a route callback");
		return NULL;
	}
	if (!(f = calloc(1, sizeof(pyrate_factory))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	f->route = opts->route;
	f->wrap = opts->wrap;
	f->user = opts->user;
	f->clock = opts->clock;
	f->leak_interval = opts->leak_interval_ms == 0 ? 10000 : opts->leak_interval_ms;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&f->mutex, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&f->leak_lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&f->wake, &cattr);
	pthread_condattr_destroy(&cattr);
	return f;
}

int
pyrate_factory_wrap_item(pyrate_factory *f, const char *name, int64_t weight, pyrate_item *out,
						 pyrate_error *err)
{
	if (!f || !out)
		return pyr_fail(err, PYRATE_EINVAL, "factory and item are required");
	if (pyr_check_weight(weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	if (f->wrap)
		return f->wrap(f, name, weight, f->user, out, err);
	out->name = name;
	out->weight = weight;
	if (!f->clock)
	{
		/* every bucket's own clock */
		out->timestamp = PYRATE_NOW;
		return PYRATE_OK;
	}
	return f->clock->now(f->clock, &out->timestamp, err);
}

int
pyrate_factory_get(pyrate_factory *f, const pyrate_item *item, pyrate_bucket **out, pyrate_error *err)
{
	int			rc;

	if (!f || !item || !out)
		return pyr_fail(err, PYRATE_EINVAL, "factory, item and result are required");
	if ((*out = __atomic_load_n(&f->single, __ATOMIC_ACQUIRE)))
		return PYRATE_OK;
	pthread_mutex_lock(&f->mutex);
	rc = f->route(f, item, f->user, out, err);
	pthread_mutex_unlock(&f->mutex);
	if (rc == PYRATE_OK && !*out)
		rc = pyr_fail(err, PYRATE_ENOTFOUND, "no bucket for \"%s\"", item->name ? item->name : "");
	return rc;
}

static ssize_t
find_bucket(pyrate_factory *f, const pyrate_bucket *b)
{
	size_t		i;

	for (i = 0; i < f->n; i++)
		if (f->entries[i].bucket == b)
			return (ssize_t) i;
	return -1;
}

pyrate_bucket *
pyrate_factory_lookup(pyrate_factory *f, const char *key)
{
	pyrate_bucket *b = NULL;
	size_t		i;

	if (!f || !key)
		return NULL;
	pthread_mutex_lock(&f->mutex);
	for (i = 0; i < f->n && !b; i++)
		if (strcmp(f->entries[i].key, key) == 0)
			b = f->entries[i].bucket;
	pthread_mutex_unlock(&f->mutex);
	return b;
}

int
pyrate_factory_schedule_leak(pyrate_factory *f, pyrate_bucket *bucket, pyrate_error *err)
{
	ssize_t		i;
	int			rc = PYRATE_OK;

	if (!f || !bucket)
		return pyr_fail(err, PYRATE_EINVAL, "factory and bucket are required");
	pthread_mutex_lock(&f->mutex);
	if ((i = find_bucket(f, bucket)) < 0)
		rc = pyr_fail(err, PYRATE_EINVAL, "the bucket is not registered with this factory");
	else if (f->leak_interval > 0)
	{
		f->entries[i].leak = true;
		if (!f->leaker_started)
		{
			if (pthread_create(&f->leaker, NULL, leaker_main, f) != 0)
			{
				f->entries[i].leak = false;
				rc = pyr_fail(err, PYRATE_ESYSTEM, "cannot start the leaker thread");
			}
			else
				f->leaker_started = true;
		}
	}
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

int
pyrate_factory_create(pyrate_factory *f, const char *key, pyrate_bucket *bucket, pyrate_error *err)
{
	int			rc;

	if (!f || !key || !bucket)
		return pyr_fail(err, PYRATE_EINVAL, "factory, key and bucket are required");
	pthread_mutex_lock(&f->mutex);
	if (pyrate_factory_lookup(f, key) || find_bucket(f, bucket) >= 0)
	{
		pthread_mutex_unlock(&f->mutex);
		return pyr_fail(err, PYRATE_EINVAL, "a bucket is already registered as \"%s\"", key);
	}
	if (f->n == f->cap)
	{
		size_t		cap = f->cap ? f->cap * 2 : 8;
		entry	   *e = realloc(f->entries, cap * sizeof(entry));

		if (!e)
		{
			pthread_mutex_unlock(&f->mutex);
			return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		}
		f->entries = e;
		f->cap = cap;
	}
	if (!(f->entries[f->n].key = strdup(key)))
	{
		pthread_mutex_unlock(&f->mutex);
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	}
	f->entries[f->n].bucket = bucket;
	f->entries[f->n].leak = false;
	f->n++;
	rc = pyrate_factory_schedule_leak(f, bucket, err);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

bool
pyrate_factory_dispose(pyrate_factory *f, pyrate_bucket *bucket)
{
	ssize_t		i;

	if (!f || !bucket)
		return false;
	pthread_mutex_lock(&f->mutex);
	if ((i = find_bucket(f, bucket)) < 0)
	{
		pthread_mutex_unlock(&f->mutex);
		return false;
	}
	free(f->entries[i].key);
	f->entries[i] = f->entries[--f->n];
	if (f->single == bucket)
		__atomic_store_n(&f->single, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&f->mutex);
	/* wait out a leak pass that may hold the bucket */
	pthread_mutex_lock(&f->leak_lock);
	pyrate_close(bucket);
	pthread_mutex_unlock(&f->leak_lock);
	return true;
}

size_t
pyrate_factory_buckets(pyrate_factory *f, pyrate_bucket **out, size_t max)
{
	size_t		i;
	size_t		n;

	if (!f)
		return 0;
	pthread_mutex_lock(&f->mutex);
	n = f->n;
	for (i = 0; i < n && i < max && out; i++)
		out[i] = f->entries[i].bucket;
	pthread_mutex_unlock(&f->mutex);
	return n;
}

int64_t
pyrate_factory_leak_interval(pyrate_factory *f)
{
	return f ? f->leak_interval : -1;
}

void
pyrate_factory_free(pyrate_factory *f)
{
	size_t		i;
	bool		join;

	if (!f)
		return;
	pthread_mutex_lock(&f->mutex);
	f->stopping = true;
	join = f->leaker_started;
	pthread_cond_broadcast(&f->wake);
	pthread_mutex_unlock(&f->mutex);
	if (join)
		pthread_join(f->leaker, NULL);
	for (i = 0; i < f->n; i++)
	{
		pyrate_close(f->entries[i].bucket);
		free(f->entries[i].key);
	}
	free(f->entries);
	if (f->owned)
		f->release_owned(f->owned);
	pthread_cond_destroy(&f->wake);
	pthread_mutex_destroy(&f->leak_lock);
	pthread_mutex_destroy(&f->mutex);
	free(f);
}

/* ---- SingleBucketFactory ------------------------------------------- */

static int
single_route(pyrate_factory *f, const pyrate_item *item, void *user, pyrate_bucket **out,
			 pyrate_error *err)
{
	(void) item;
	(void) err;
	(void) user;
	*out = f->n > 0 ? f->entries[0].bucket : NULL;
	return PYRATE_OK;
}

pyrate_factory *
pyrate_single_bucket_factory_new(pyrate_bucket *bucket, bool schedule_leak, pyrate_clock *clock,
								 pyrate_error *err)
{
	pyrate_factory_options opts = {single_route, NULL, NULL, clock, schedule_leak ? 0 : -1};
	pyrate_factory *f;

	if (!bucket)
	{
		pyr_fail(err, PYRATE_EINVAL, "a bucket is required");
		return NULL;
	}
	if (!(f = pyrate_factory_new(&opts, err)))
		return NULL;
	if (pyrate_factory_create(f, "", bucket, err) != PYRATE_OK)
	{
		/* on failure the bucket stays the caller's */
		if (f->n > 0)
		{
			free(f->entries[0].key);
			f->n = 0;
		}
		pyrate_factory_free(f);
		return NULL;
	}
	f->single = bucket;
	return f;
}

/* ---- the keyed factory ------------------------------------------------- */

static int
keyed_route(pyrate_factory *f, const pyrate_item *item, void *user, pyrate_bucket **out,
			pyrate_error *err)
{
	const char *name = item->name ? item->name : "pyrate";
	pyrate_bucket *b;
	pyrate_error e;

	(void) user;
	if ((b = pyrate_factory_lookup(f, name)))
	{
		*out = b;
		return PYRATE_OK;
	}
	pyr_clear_error(&e);
	if (!(b = f->make(name, f->make_user, &e)))
		return pyr_forward(err, &e, e.code ? e.code : PYRATE_EINVAL);
	/* registered but not scheduled for leaks still limits: keep it then */
	if (pyrate_factory_create(f, name, b, &e) != PYRATE_OK && find_bucket(f, b) < 0)
	{
		pyrate_close(b);
		return pyr_forward(err, &e, e.code);
	}
	*out = b;
	return PYRATE_OK;
}

pyrate_factory *
pyrate_factory_new_keyed(pyrate_make_bucket_fn make, void *user, pyrate_clock *clock,
						 int64_t leak_interval_ms, pyrate_error *err)
{
	pyrate_factory_options opts = {keyed_route, NULL, NULL, clock, leak_interval_ms};
	pyrate_factory *f;

	if (!make)
	{
		pyr_fail(err, PYRATE_EINVAL, "a bucket constructor is required");
		return NULL;
	}
	if (!(f = pyrate_factory_new(&opts, err)))
		return NULL;
	f->make = make;
	f->make_user = user;
	return f;
}

void
pyr_factory_own(pyrate_factory *f, void *ptr, void (*release) (void *))
{
	f->owned = ptr;
	f->release_owned = release ? release : free;
}
