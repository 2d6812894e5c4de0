/*
 * client_limiter.c — Limiter: try_acquire with blocking, timeout and
 * buffer_ms, the call wrapper, and the one-call limiters.
 *
 * No limiter-wide lock: every built-in bucket is atomic on its own, and a
 * bucket's optional limiter lock is held around one put, never across a
 * sleep.
 */
#include "internal.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct pyrate_limiter
{
	pyrate_factory *factory;
	int64_t		buffer_ms;
	pyrate_fail_mode fail_mode;
};

static bool
check_options(const pyrate_limiter_options *opts, pyrate_error *err)
{
	if (opts && opts->fail_mode != PYRATE_FAIL_CLOSED && opts->fail_mode != PYRATE_FAIL_OPEN)
	{
		pyr_fail(err, PYRATE_EINVAL, "fail_mode must be PYRATE_FAIL_CLOSED or PYRATE_FAIL_OPEN");
		return false;
	}
	return true;
}

static void
init_limiter(pyrate_limiter *l, pyrate_factory *factory, const pyrate_limiter_options *opts)
{
	l->factory = factory;
	l->buffer_ms = opts && opts->buffer_ms >= 0 ? opts->buffer_ms : 50;
	l->fail_mode = opts ? opts->fail_mode : PYRATE_FAIL_CLOSED;
}

pyrate_limiter *
pyrate_limiter_new(pyrate_factory *factory, const pyrate_limiter_options *opts, pyrate_error *err)
{
	pyrate_limiter *l;

	if (!factory)
	{
		pyr_fail(err, PYRATE_EINVAL, "a factory is required");
		return NULL;
	}
	if (!check_options(opts, err))
		return NULL;
	if (!(l = calloc(1, sizeof(pyrate_limiter))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	init_limiter(l, factory, opts);
	return l;
}

pyrate_limiter *
pyrate_limiter_new_bucket(pyrate_bucket *bucket, const pyrate_limiter_options *opts, pyrate_error *err)
{
	pyrate_limiter *l;
	pyrate_factory *f;

	if (!check_options(opts, err))
		return NULL;
	if (!(l = calloc(1, sizeof(pyrate_limiter))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	/* last, so that on any failure the bucket is still the caller's */
	if (!(f = pyrate_single_bucket_factory_new(bucket, true, NULL, err)))
	{
		free(l);
		return NULL;
	}
	init_limiter(l, f, opts);
	return l;
}

static bool
unreachable(int rc)
{
	return rc == PYRATE_EBACKEND || rc == PYRATE_ETIMEOUT;
}

int
pyrate_try_acquire(pyrate_limiter *l, const char *name, int64_t weight, bool blocking,
				   double timeout, bool *acquired, pyrate_acquire_info *info, pyrate_error *err)
{
	pyrate_acquire_info local;
	int64_t		deadline = INT64_MAX;	/* monotonic us */

	if (!info)
		info = &local;
	/* field by field: the error's text buffers are not worth zeroing per call */
	info->outcome = PYRATE_REJECTED;
	info->waited_ms = 0;
	info->attempts = 0;
	pyr_clear_error(&info->backend_error);
	info->decision = (pyrate_decision) {false, {0, 0}, 0, -1, PYRATE_NOW};
	if (!l || !acquired)
		return pyr_fail(err, PYRATE_EINVAL, "limiter and result are required");
	*acquired = false;
	if (weight < 0)
		return pyr_fail(err, PYRATE_EINVAL, "weight must be >= 0 (got %lld)", (long long) weight);
	if (isnan(timeout) || (timeout < 0 && timeout != -1))
		return pyr_fail(err, PYRATE_EINVAL, "timeout must be -1 (wait forever) or >= 0 seconds (got %g)", timeout);
	if (!blocking && timeout != -1)
		return pyr_fail(err, PYRATE_EINVAL, "a timeout needs blocking = true");
	if (!name)
		name = "pyrate";
	if (timeout >= 0 && timeout * 1000000 < (double) (INT64_MAX / 2))
		deadline = pyr_monotonic_us() + (int64_t) ceil(timeout * 1000000);
	if (weight == 0)
	{
		/* weight 0 is always admitted and stores nothing */
		*acquired = true;
		info->outcome = PYRATE_ACQUIRED;
		return PYRATE_OK;
	}

	for (;;)
	{
		pyrate_item item;
		pyrate_bucket *bucket;
		pyrate_error e;
		int			rc;
		int64_t		delay;

		pyr_clear_error(&e);
		rc = pyrate_factory_wrap_item(l->factory, name, weight, &item, &e);
		if (rc == PYRATE_OK)
			rc = pyrate_factory_get(l->factory, &item, &bucket, &e);
		if (rc == PYRATE_OK && bucket->ops->lock)
			rc = bucket->ops->lock(bucket, &e);
		if (rc == PYRATE_OK)
		{
			info->attempts++;
			rc = pyrate_put(bucket, &item, &info->decision, &e);
			if (bucket->ops->unlock)
				bucket->ops->unlock(bucket);
		}
		if (unreachable(rc))
		{
			info->backend_error = e;
			info->outcome = l->fail_mode == PYRATE_FAIL_OPEN ? PYRATE_FAILED_OPEN : PYRATE_FAILED_CLOSED;
			*acquired = l->fail_mode == PYRATE_FAIL_OPEN;
			return PYRATE_OK;
		}
		if (rc != PYRATE_OK)
			return pyr_forward(err, &e, rc);
		if (info->decision.acquired)
		{
			*acquired = true;
			info->outcome = PYRATE_ACQUIRED;
			return PYRATE_OK;
		}
		if (info->decision.retry_after_ms < 0)
		{
			info->outcome = PYRATE_NEVER;
			return PYRATE_OK;
		}
		if (!blocking)
			return PYRATE_OK;
		delay = info->decision.retry_after_ms + l->buffer_ms;
		if (deadline != INT64_MAX)
		{
			int64_t		now = pyr_monotonic_us();

			if (now >= deadline)
			{
				info->outcome = PYRATE_TIMED_OUT;
				return PYRATE_OK;
			}
			/* whole ms, rounded up: never give up before the deadline */
			if (delay > (deadline - now + 999) / 1000)
				delay = (deadline - now + 999) / 1000;
		}
		if (delay < 1)
			delay = 1;
		pyr_sleep_ms(delay);
		info->waited_ms += delay;
	}
}

int
pyrate_call(pyrate_limiter *l, const char *name, int64_t weight, double timeout,
			pyrate_call_fn fn, void *arg, int *fn_result, bool *called, pyrate_error *err)
{
	bool		acquired = false;
	int			rc;

	if (called)
		*called = false;
	if (!fn)
		return pyr_fail(err, PYRATE_EINVAL, "a function is required");
	rc = pyrate_try_acquire(l, name, weight, true, timeout, &acquired, NULL, err);
	if (rc != PYRATE_OK || !acquired)
		return rc;
	rc = fn(arg);
	if (fn_result)
		*fn_result = rc;
	if (called)
		*called = true;
	return PYRATE_OK;
}

int64_t
pyrate_limiter_buffer_ms(pyrate_limiter *l)
{
	return l ? l->buffer_ms : -1;
}

pyrate_factory *
pyrate_limiter_factory(pyrate_limiter *l)
{
	return l ? l->factory : NULL;
}

size_t
pyrate_limiter_buckets(pyrate_limiter *l, pyrate_bucket **out, size_t max)
{
	return l ? pyrate_factory_buckets(l->factory, out, max) : 0;
}

bool
pyrate_limiter_dispose(pyrate_limiter *l, pyrate_bucket *bucket)
{
	return l ? pyrate_factory_dispose(l->factory, bucket) : false;
}

void
pyrate_limiter_free(pyrate_limiter *l)
{
	if (!l)
		return;
	pyrate_factory_free(l->factory);
	free(l);
}

/* ---- one-call limiters ---------------------------------------------- */

/* a limiter owning a factory, freeing both on failure */
static pyrate_limiter *
limiter_or_free(pyrate_factory *f, int64_t buffer_ms, pyrate_fail_mode mode, pyrate_error *err)
{
	pyrate_limiter_options opts = {buffer_ms, mode};
	pyrate_limiter *l;

	if (!f)
		return NULL;
	if (!(l = pyrate_limiter_new(f, &opts, err)))
		pyrate_factory_free(f);
	return l;
}

/* a single-bucket limiter owning bucket, closing it on failure */
static pyrate_limiter *
single_or_close(pyrate_bucket *b, bool leak, int64_t buffer_ms, pyrate_fail_mode mode, pyrate_error *err)
{
	pyrate_factory *f;

	if (!b)
		return NULL;
	if (!(f = pyrate_single_bucket_factory_new(b, leak, NULL, err)))
	{
		pyrate_close(b);
		return NULL;
	}
	return limiter_or_free(f, buffer_ms, mode, err);
}

/*
 * What a keyed factory builds each name's bucket from: a bucket never put
 * to, its rates validated once, up front (the Redis one's connections shared
 * with every bucket), and a key prefix (Redis).
 */
typedef struct keyed_template
{
	pyrate_bucket *proto;
	char		prefix[];
} keyed_template;

static void
release_template(void *ptr)
{
	keyed_template *t = ptr;

	pyrate_close(t->proto);
	free(t);
}

/* a keyed factory of make's buckets from proto (owned from now on, closed on failure) */
static pyrate_factory *
keyed_factory(pyrate_bucket *proto, const char *prefix, pyrate_make_bucket_fn make,
			  int64_t leak_interval_ms, pyrate_error *err)
{
	keyed_template *t;
	pyrate_factory *f;

	if (!proto)
		return NULL;
	if (!(t = malloc(offsetof(keyed_template, prefix) + strlen(prefix) + 1)))
	{
		pyrate_close(proto);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	t->proto = proto;
	strcpy(t->prefix, prefix);
	if (!(f = pyrate_factory_new_keyed(make, t, NULL, leak_interval_ms, err)))
	{
		release_template(t);
		return NULL;
	}
	pyr_factory_own(f, t, release_template);
	return f;
}

static pyrate_bucket *
make_memory(const char *name, void *user, pyrate_error *err)
{
	keyed_template *t = user;

	(void) name;
	return pyrate_memory_bucket_new(t->proto->rates, t->proto->nrates, err);
}

/* each name its own in-memory bucket */
pyrate_limiter *
pyrate_limiter_new_memory(const pyrate_rate *rates, int n, int64_t buffer_ms, pyrate_error *err)
{
	if (n < 1 || n > PYRATE_MAX_RATES || !rates)
	{
		pyr_fail(err, PYRATE_EINVAL, "1 to %d rates are required", PYRATE_MAX_RATES);
		return NULL;
	}
	return limiter_or_free(keyed_factory(pyrate_memory_bucket_new(rates, n, err), "", make_memory, 0, err),
						   buffer_ms, PYRATE_FAIL_CLOSED, err);
}

/* the key prefix + name, sharing the template's connections */
static pyrate_bucket *
make_redis(const char *name, void *user, pyrate_error *err)
{
	keyed_template *t = user;
	size_t		plen = strlen(t->prefix);
	size_t		nlen = strlen(name);
	char		stack[256];
	char	   *key = plen + nlen < sizeof(stack) ? stack : malloc(plen + nlen + 1);
	pyrate_bucket *b;

	if (!key)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(key, t->prefix, plen);
	memcpy(key + plen, name, nlen + 1);
	b = pyr_redis_bucket_sibling(t->proto, key, err);
	if (key != stack)
		free(key);
	return b;
}

pyrate_factory *
pyrate_redis_factory_new(const pyrate_rate *rates, int n, const pyrate_redis_options *opts,
						 int64_t leak_interval_ms, pyrate_error *err)
{
	pyrate_redis_options o = opts ? *opts : (pyrate_redis_options) {0};
	const char *prefix = o.key ? o.key : "pyrate:";

	/* the prototype's own key is never used */
	o.key = prefix[0] ? prefix : "pyrate:";
	return keyed_factory(pyrate_redis_bucket_new(rates, n, &o, err), prefix, make_redis, leak_interval_ms, err);
}

pyrate_limiter *
pyrate_limiter_new_sqlite(const pyrate_rate *rates, int n, const char *path, bool use_file_lock,
						  int64_t buffer_ms, pyrate_error *err)
{
	pyrate_sqlite_options o = {path, NULL, false, use_file_lock, 0};

	return single_or_close(pyrate_sqlite_bucket_new(rates, n, &o, err), true, buffer_ms,
						   PYRATE_FAIL_CLOSED, err);
}

pyrate_limiter *
pyrate_limiter_new_redis(const pyrate_rate *rates, int n, const char *host, int port,
						 int64_t buffer_ms, pyrate_error *err)
{
	pyrate_redis_options o = {host, port, NULL, NULL, "pyrate:", 0, 0};

	return limiter_or_free(pyrate_redis_factory_new(rates, n, &o, 0, err), buffer_ms, PYRATE_FAIL_CLOSED, err);
}

pyrate_limiter *
pyrate_limiter_new_postgres(const char *conninfo, int64_t buffer_ms, pyrate_fail_mode fail_mode,
							pyrate_error *err)
{
	pyrate_pg_options o = {conninfo, NULL, NULL, 0, PYRATE_PG_FASTPATH};

	/* the extension's worker (or the user's schedule) leaks the server's buckets */
	return single_or_close(pyrate_pg_bucket_new(&o, err), false, buffer_ms, fail_mode, err);
}

pyrate_limiter *
pyrate_limiter_new_postgres_sharded(const char *const *conninfos, int n, int64_t buffer_ms,
									pyrate_fail_mode fail_mode, pyrate_error *err)
{
	/* as for one primary: each server's worker leaks its buckets */
	return limiter_or_free(pyrate_pg_sharded_factory_new(conninfos, n, NULL, err), buffer_ms, fail_mode, err);
}
