/*
 * sharded.c — bucket names partitioned across several PostgreSQL primaries
 * by the client: the shard hash, and a factory of one Postgres bucket per
 * primary that routes each name to its shard's.
 *
 * The hash is part of the contract (pyrate.h spells it out) so that other
 * languages, scripts and operators find a name's shard without this code:
 * 64-bit FNV-1a of the name's bytes, or of its {hash tag}, modulo the
 * number of shards.  Each shard is an ordinary unbound Postgres bucket:
 * every name routed there shares its connection, and it connects,
 * reconnects, times out and fails on its own, so an unreachable primary
 * fails the calls of its names only.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME UINT64_C(0x100000001b3)

uint64_t
pyrate_shard_hash(const char *name)
{
	const unsigned char *c;
	const unsigned char *end = NULL;
	const char *open;
	uint64_t	h = FNV64_OFFSET;

	if (!name)
		name = "";
	c = (const unsigned char *) name;
	/* a non-empty {hash tag} is hashed alone, as Redis Cluster does */
	if ((open = strchr(name, '{')))
	{
		const char *close = strchr(open + 1, '}');

		if (close && close > open + 1)
		{
			c = (const unsigned char *) open + 1;
			end = (const unsigned char *) close;
		}
	}
	for (; end ? c < end : *c != '\0'; c++)
	{
		h ^= *c;
		h *= FNV64_PRIME;
	}
	return h;
}

int
pyrate_shard_of(const char *name, int nshards)
{
	if (!name || nshards < 1)
		return -1;
	return (int) (pyrate_shard_hash(name) % (uint64_t) nshards);
}

/* what the factory builds each shard's bucket from */
typedef struct shards
{
	int			n;
	char	   *schema;
	int			timeout_ms;
	pyrate_pg_protocol protocol;
	char	   *conninfo[];
} shards;

static void
release_shards(void *ptr)
{
	shards	   *s = ptr;
	int			i;

	for (i = 0; i < s->n; i++)
		free(s->conninfo[i]);
	free(s->schema);
	free(s);
}

/* the key a shard's bucket is registered under: "shard:I" */
static void
shard_key(char *buf, size_t len, int i)
{
	snprintf(buf, len, "shard:%d", i);
}

/* shard i's bucket, registered with f (closed on failure) */
static pyrate_bucket *
open_shard(pyrate_factory *f, const shards *s, int i, pyrate_error *err)
{
	pyrate_pg_options o = {s->conninfo[i], NULL, s->schema, s->timeout_ms, s->protocol};
	pyrate_bucket *b = pyrate_pg_bucket_new(&o, err);
	char		key[32];

	if (!b)
		return NULL;
	shard_key(key, sizeof(key), i);
	/* no leaker runs, so registering is all create does */
	if (pyrate_factory_create(f, key, b, err) != PYRATE_OK)
	{
		pyrate_close(b);
		return NULL;
	}
	return b;
}

static int
sharded_route(pyrate_factory *f, const pyrate_item *item, void *user, pyrate_bucket **out,
			  pyrate_error *err)
{
	shards	   *s = user;
	int			i = pyrate_shard_of(item->name ? item->name : "pyrate", s->n);
	char		key[32];
	pyrate_error e;

	shard_key(key, sizeof(key), i);
	if ((*out = pyrate_factory_lookup(f, key)))
		return PYRATE_OK;
	/* the shard's bucket was disposed: a new one, as the keyed factory does */
	pyr_clear_error(&e);
	if (!(*out = open_shard(f, s, i, &e)))
		return pyr_forward(err, &e, e.code ? e.code : PYRATE_ENOMEM);
	return PYRATE_OK;
}

pyrate_factory *
pyrate_pg_sharded_factory_new(const char *const *conninfos, int n, const pyrate_pg_options *opts,
							  pyrate_error *err)
{
	pyrate_factory_options fo = {sharded_route, NULL, NULL, NULL, -1};
	pyrate_factory *f;
	shards	   *s;
	int			i;

	if (n < 1 || !conninfos)
	{
		pyr_fail(err, PYRATE_EINVAL, "postgres shards: at least one connection string is required");
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (!conninfos[i])
		{
			pyr_fail(err, PYRATE_EINVAL, "postgres shards: connection string %d is NULL", i);
			return NULL;
		}
	if (opts && (opts->conninfo || opts->name))
	{
		pyr_fail(err, PYRATE_EINVAL, "postgres shards: the options' conninfo and name must be NULL "
				 "(each shard has its connection string, and every name is routed)");
		return NULL;
	}
	if (!(s = calloc(1, offsetof(shards, conninfo) + n * sizeof(char *))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	s->timeout_ms = opts ? opts->timeout_ms : 0;
	s->protocol = opts ? opts->protocol : PYRATE_PG_FASTPATH;
	if (opts && opts->schema && !(s->schema = strdup(opts->schema)))
	{
		release_shards(s);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	for (s->n = 0; s->n < n; s->n++)
		if (!(s->conninfo[s->n] = strdup(conninfos[s->n])))
		{
			release_shards(s);
			pyr_fail(err, PYRATE_ENOMEM, "out of memory");
			return NULL;
		}
	fo.user = s;
	if (!(f = pyrate_factory_new(&fo, err)))
	{
		release_shards(s);
		return NULL;
	}
	pyr_factory_own(f, s, release_shards);
	/* every shard's bucket now: bad options fail here, not at first use */
	for (i = 0; i < n; i++)
		if (!open_shard(f, s, i, err))
		{
			pyrate_factory_free(f);
			return NULL;
		}
	return f;
}
