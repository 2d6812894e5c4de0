/*
 * redis_internal.h — the Redis bucket's layers.  Each file uses only those
 * above it in this list:
 *
 *   redis_conn.c    the connections: one server, or a Redis Cluster followed
 *                   by its slot map (MOVED, ASK, CLUSTER SLOTS), one
 *                   connection per node, each node's clock, a script run
 *                   on a key within the call's deadline
 *   bucket_redis.c  the bucket: the script's text, the ops, buckets that
 *                   share one pyr_redis (the keyed factory's)
 */
#ifndef PYRATE_REDIS_INTERNAL_H
#define PYRATE_REDIS_INTERNAL_H

#include "internal.h"

#include <hiredis/hiredis.h>

/* a server, or a cluster: the connections every bucket built from it shares */
typedef struct pyr_redis pyr_redis;

/* a Lua script and its SHA-1, the name EVALSHA calls it by on every node */
typedef struct pyr_script
{
	char	   *text;
	char		sha[41];
} pyr_script;

/*
 * EVALSHA script 1 key args...: args are at most 20 bytes each (decimals and
 * op letters).  With stamp set, args include stamp, a buffer of 24 bytes
 * the call fills with the clock of the node that runs the script (as the
 * client reckons it) right before sending, and ts gets that time in ms.
 */
typedef struct pyr_redis_call
{
	const pyr_script *script;
	const char *key;
	size_t		key_len;
	int			slot;
	int			argc;
	const char **args;
	char	   *stamp;
	int64_t		ts;
} pyr_redis_call;

/* the cluster slot of a key: CRC16 of the key, or of its {hash tag} */
int			pyr_redis_slot(const char *key, size_t len);
/* the script's SHA-1 in hex, as SCRIPT LOAD answers it */
void		pyr_redis_sha1(const char *text, size_t len, char hex[41]);
/* n in decimal at p; returns the end */
char	   *pyr_redis_decimal(char *p, int64_t n);

/* nothing connects until the first call */
pyr_redis  *pyr_redis_new(const pyrate_redis_options *opts, pyrate_error *err);
void		pyr_redis_free(pyr_redis *c);

/*
 * Run call on the node serving its key (following MOVED and ASK, loading
 * the script on a node that says NOSCRIPT), retrying a cluster's passing
 * errors (CLUSTERDOWN, TRYAGAIN, a node unreachable) within timeout_ms of
 * the start.  The caller frees *out.  Thread-safe.
 */
int			pyr_redis_eval(pyr_redis *c, pyr_redis_call *call, redisReply **out, pyrate_error *err);

#endif							/* PYRATE_REDIS_INTERNAL_H */
