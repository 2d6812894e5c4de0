/*
 * redis_conn.c — the Redis bucket's connections: one server, or a Redis
 * Cluster followed by its slot map.
 *
 * A pyr_redis keeps one connection per node, each behind a mutex of its own
 * held for a round trip, and for a cluster the slot map (the node of each of
 * the 16384 slots), behind the pyr_redis's mutex.  No code holds both
 * mutexes at once.  Nodes are only ever added, so a node found under the
 * map's mutex stays valid after it.
 *
 * Whether the address given is a cluster is found at first use: CLUSTER
 * SLOTS there answers the map (a cluster) or an error (a single server:
 * "cluster support disabled", or a proxy that does not know the command).
 * A MOVED reply later makes any server a cluster.  Afterwards a call goes to
 * the node its key's slot maps to; MOVED updates that slot, sends the call
 * there and has the next call reload the whole map (one call at a time
 * reloads it, from a node already connected if one answers); ASK sends
 * ASKING and the call to the node named, once, leaving the map alone.
 * Scripts are per node: a node that says NOSCRIPT is sent the script (SCRIPT
 * LOAD) and the call again.
 *
 * A call retries until timeout_ms after it began (its first round trip has
 * the whole timeout on the socket, a retry what is left).  On a cluster a
 * node that cannot be reached, CLUSTERDOWN, TRYAGAIN and LOADING are waited
 * out (the map reloaded, sleeps of 10 ms doubling to 200 ms) until then,
 * and become PYRATE_EBACKEND if they last: the limiter's fail mode decides,
 * as for any server that cannot be reached.  A call whose script was sent
 * and whose reply was lost is never sent again (it may have run): it fails,
 * as on a single server, and the connection is dropped.
 */
#include "redis_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16384
/* MOVED and ASK replies one call follows at most */
#define MAX_REDIRECTS 16
/* a call's command built on the stack up to this size */
#define STACK_COMMAND 1024

typedef struct redis_node
{
	pthread_mutex_t mutex;		/* held for a round trip: the fields below */
	char	   *host;			/* or a unix socket's path (port 0) */
	int			port;
	redisContext *ctx;			/* NULL until (re)connected */
	int			timeout_ms;		/* the socket timeout set on ctx */
	int64_t		clock_offset_us;	/* the node's TIME less CLOCK_MONOTONIC, in us */
	int64_t		clock_synced_ms;	/* monotonic ms of that reading; 0: none on ctx */
} redis_node;

typedef enum
{
	MODE_UNKNOWN, MODE_SINGLE, MODE_CLUSTER
} redis_mode;

struct pyr_redis
{
	pthread_mutex_t mutex;		/* the fields below, up to password */
	redis_mode	mode;
	redis_node **nodes;			/* nodes[0]: the address given, the seed */
	int			nnodes;
	int			cap;
	int16_t    *slots;			/* a cluster's node of each slot, -1 none */
	bool		stale;			/* reload the map at the next call */
	bool		reloading;		/* a call is reloading it */
	int			next_node;		/* where a slot no node serves is tried */
	/* set once */
	redis_node *seed;
	char	   *password;
	int			timeout_ms;
};

/* ---- keys, slots and scripts --------------------------------------------- */

static uint16_t
crc16(const char *s, size_t len)
{
	uint16_t	crc = 0;
	size_t		i;
	int			bit;

	/* CRC-16/XMODEM, as Redis Cluster hashes keys */
	for (i = 0; i < len; i++)
	{
		crc ^= (uint16_t) ((unsigned char) s[i] << 8);
		for (bit = 0; bit < 8; bit++)
			crc = crc & 0x8000 ? (uint16_t) ((crc << 1) ^ 0x1021) : (uint16_t) (crc << 1);
	}
	return crc;
}

int
pyr_redis_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	/* the first {...} with something inside: only that is hashed */
	if (open)
	{
		size_t		from = (size_t) (open - key) + 1;
		const char *close = memchr(open + 1, '}', len - from);

		if (close && close > open + 1)
			return crc16(open + 1, (size_t) (close - open - 1)) & (SLOTS - 1);
	}
	return crc16(key, len) & (SLOTS - 1);
}

static uint32_t
rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

void
pyr_redis_sha1(const char *text, size_t len, char hex[41])
{
	uint32_t	h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	uint64_t	bits = (uint64_t) len * 8;
	/* the text, 0x80, zeros and the length in bits: whole blocks of 64 bytes */
	size_t		total = ((len + 8) / 64 + 1) * 64;
	size_t		off;
	int			i;

	for (off = 0; off < total; off += 64)
	{
		uint32_t	w[80];
		uint32_t	a = h[0],
					b = h[1],
					c = h[2],
					d = h[3],
					e = h[4];

		for (i = 0; i < 64; i++)
		{
			size_t		p = off + i;
			uint32_t	byte = p < len ? (unsigned char) text[p] : p == len ? 0x80
				: p >= total - 8 ? (uint32_t) (bits >> (8 * (total - 1 - p))) & 0xFF : 0;

			if (i % 4 == 0)
				w[i / 4] = 0;
			w[i / 4] |= byte << (8 * (3 - i % 4));
		}
		for (i = 16; i < 80; i++)
			w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
		for (i = 0; i < 80; i++)
		{
			uint32_t	f = i < 20 ? ((b & c) | (~b & d)) + 0x5A827999
				: i < 40 ? (b ^ c ^ d) + 0x6ED9EBA1
				: i < 60 ? ((b & c) | (b & d) | (c & d)) + 0x8F1BBCDC
				: (b ^ c ^ d) + 0xCA62C1D6;
			uint32_t	t = rol(a, 5) + f + e + w[i];

			e = d;
			d = c;
			c = rol(b, 30);
			b = a;
			a = t;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
	for (i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned) (h[i / 4] >> (8 * (3 - i % 4))) & 0xFF);
}

char *
pyr_redis_decimal(char *p, int64_t n)
{
	char		digits[20];
	uint64_t	u = n < 0 ? -(uint64_t) n : (uint64_t) n;
	int			i = 0;

	do
		digits[i++] = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (n < 0)
		*p++ = '-';
	while (i > 0)
		*p++ = digits[--i];
	return p;
}

/* ---- nodes ------------------------------------------------------------- */

static redis_node *
node_new(const char *host, int port)
{
	redis_node *n = calloc(1, sizeof(redis_node));

	if (!n)
		return NULL;
	if (!(n->host = strdup(host)))
	{
		free(n);
		return NULL;
	}
	n->port = port;
	pthread_mutex_init(&n->mutex, NULL);
	return n;
}

static void
disconnect(redis_node *n)
{
	if (n->ctx)
		redisFree(n->ctx);
	n->ctx = NULL;
	n->clock_synced_ms = 0;
}

/* "redis 127.0.0.1:6379", or "redis /path" for a unix socket, and the rest */
static int
node_fail(redis_node *n, pyrate_error *err, int code, const char *what, const char *why)
{
	return n->port ? pyr_fail(err, code, "redis %s:%d: %s: %s", n->host, n->port, what, why)
		: pyr_fail(err, code, "redis %s: %s: %s", n->host, what, why);
}

/* an I/O failure: drop the connection so that the next call reconnects */
static int
io_fail(redis_node *n, pyrate_error *err, const char *what)
{
	bool		timed_out = n->ctx && n->ctx->err == REDIS_ERR_IO &&
		(errno == EAGAIN || errno == EWOULDBLOCK);
	int			rc = node_fail(n, err, timed_out ? PYRATE_ETIMEOUT : PYRATE_EBACKEND, what,
							   !n->ctx ? "no connection" : timed_out ? "timed out" : n->ctx->errstr);

	disconnect(n);
	return rc;
}

static struct timeval
ms_timeval(int ms)
{
	return (struct timeval) {ms / 1000, (ms % 1000) * 1000};
}

/* the whole ms left before deadline (monotonic us), rounded up; 0 once it passed */
static int
ms_left(int64_t deadline)
{
	int64_t		left = deadline - pyr_monotonic_us();

	return left > 0 ? (int) ((left + 999) / 1000) : 0;
}

/* the socket timeout of the next round trip on n */
static int
node_timeout(redis_node *n, int ms, pyrate_error *err)
{
	if (ms == n->timeout_ms)
		return PYRATE_OK;
	if (redisSetTimeout(n->ctx, ms_timeval(ms)) != REDIS_OK)
		return io_fail(n, err, "setting the timeout");
	n->timeout_ms = ms;
	return PYRATE_OK;
}

/* connect n when it is not, within deadline; the caller holds n's mutex */
static int
node_connect(pyr_redis *c, redis_node *n, int64_t deadline, pyrate_error *err)
{
	int			ms = ms_left(deadline);
	redisReply *rep;
	int			rc = PYRATE_OK;

	if (n->ctx)
		return PYRATE_OK;
	if (ms == 0)
		return node_fail(n, err, PYRATE_ETIMEOUT, "cannot connect", "timed out");
	n->ctx = n->port ? redisConnectWithTimeout(n->host, n->port, ms_timeval(ms))
		: redisConnectUnixWithTimeout(n->host, ms_timeval(ms));
	if (!n->ctx)
		return pyr_fail(err, PYRATE_ENOMEM, "redis: out of memory");
	if (n->ctx->err)
	{
		rc = node_fail(n, err, PYRATE_EBACKEND, "cannot connect", n->ctx->errstr);
		disconnect(n);
		return rc;
	}
	n->timeout_ms = 0;
	if ((rc = node_timeout(n, c->timeout_ms, err)) != PYRATE_OK || !c->password)
		return rc;
	if (!(rep = redisCommand(n->ctx, "AUTH %s", c->password)))
		return io_fail(n, err, "authenticating");
	if (rep->type == REDIS_REPLY_ERROR)
		rc = node_fail(n, err, PYRATE_ESERVER, "AUTH failed", rep->str);
	freeReplyObject(rep);
	if (rc != PYRATE_OK)
		disconnect(n);
	return rc;
}

/*
 * How often a node's clock is read again: between readings the local
 * monotonic clock stands in for it.  Clocks drift apart by parts per
 * million, far below a millisecond in a second; a step of the node's clock
 * is seen at the next reading (and a put stamped before the newest item is
 * stored at the newest's time, so the log keeps its order).
 */
#define CLOCK_SYNC_MS 1000

/*
 * The node's clock now, in ms, as this client reckons it: TIME read at most
 * every CLOCK_SYNC_MS on this connection, its reading taken to be the middle
 * of the round trip (off by at most half of it, microseconds on a LAN), plus
 * the monotonic time since.  A put then calls no TIME on the server, and
 * the clients of one server still share its clock.  The caller holds n's
 * mutex, n connected.
 */
static int
node_clock(redis_node *n, int64_t *ms, pyrate_error *err)
{
	int64_t		now_us = pyr_monotonic_us();

	if (n->clock_synced_ms == 0 || now_us / 1000 - n->clock_synced_ms >= CLOCK_SYNC_MS)
	{
		redisReply *rep = redisCommand(n->ctx, "TIME");
		int64_t		after_us = pyr_monotonic_us();

		if (!rep)
			return io_fail(n, err, "reading the server clock");
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
			rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
		{
			freeReplyObject(rep);
			return node_fail(n, err, PYRATE_ESERVER, "TIME", "unexpected reply");
		}
		n->clock_offset_us = strtoll(rep->element[0]->str, NULL, 10) * 1000000 +
			strtoll(rep->element[1]->str, NULL, 10) - (now_us + after_us) / 2;
		n->clock_synced_ms = after_us / 1000;
		freeReplyObject(rep);
		now_us = after_us;
	}
	*ms = (now_us + n->clock_offset_us) / 1000;
	return PYRATE_OK;
}

/* ---- the map ----------------------------------------------------------- */

pyr_redis *
pyr_redis_new(const pyrate_redis_options *opts, pyrate_error *err)
{
	pyr_redis  *c = calloc(1, sizeof(pyr_redis));

	if (!c || !(c->nodes = malloc(4 * sizeof(redis_node *))) ||
		!(c->nodes[0] = opts->unix_path ? node_new(opts->unix_path, 0)
		  : node_new(opts->host ? opts->host : "127.0.0.1", opts->port > 0 ? opts->port : 6379)) ||
		(opts->password && !(c->password = strdup(opts->password))))
	{
		if (c && c->nodes && c->nodes[0])
			c->nnodes = 1;
		pyr_redis_free(c);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	c->seed = c->nodes[0];
	c->nnodes = 1;
	c->cap = 4;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 2000;
	pthread_mutex_init(&c->mutex, NULL);
	return c;
}

void
pyr_redis_free(pyr_redis *c)
{
	int			i;

	if (!c)
		return;
	for (i = 0; i < c->nnodes; i++)
	{
		disconnect(c->nodes[i]);
		pthread_mutex_destroy(&c->nodes[i]->mutex);
		free(c->nodes[i]->host);
		free(c->nodes[i]);
	}
	if (c->cap)
		pthread_mutex_destroy(&c->mutex);
	free(c->nodes);
	free(c->slots);
	free(c->password);
	free(c);
}

/* the index of the node at host:port, added when new; -1 out of memory.  Holds c's mutex. */
static int
node_index(pyr_redis *c, const char *host, int port)
{
	int			i;

	for (i = 0; i < c->nnodes; i++)
		if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0)
			return i;
	if (c->nnodes == c->cap)
	{
		redis_node **nodes = realloc(c->nodes, 2 * c->cap * sizeof(redis_node *));

		if (!nodes)
			return -1;
		c->nodes = nodes;
		c->cap *= 2;
	}
	if (!(c->nodes[c->nnodes] = node_new(host, port)))
		return -1;
	return c->nnodes++;
}

/* a cluster: the map, every slot unknown until set; false out of memory.  Holds c's mutex. */
static bool
become_cluster(pyr_redis *c)
{
	if (!c->slots)
	{
		if (!(c->slots = malloc(SLOTS * sizeof(int16_t))))
			return false;
		memset(c->slots, 0xFF, SLOTS * sizeof(int16_t));
	}
	c->mode = MODE_CLUSTER;
	return true;
}

/* the node for slot by the map (any node for a slot it lacks).  Holds c's mutex. */
static redis_node *
slot_node(pyr_redis *c, int slot)
{
	if (c->mode == MODE_CLUSTER && c->slots[slot] >= 0)
		return c->nodes[c->slots[slot]];
	if (c->mode == MODE_CLUSTER)
		return c->nodes[c->next_node++ % c->nnodes];
	return c->nodes[0];
}

/*
 * Install a CLUSTER SLOTS reply got from node from: entries {start, end,
 * {host, port, id...}, replicas...}.  A master without an address of its
 * own ("" or "?") is at from's host.  False on a reply of another shape.
 */
static bool
install_map(pyr_redis *c, redis_node *from, const redisReply *rep)
{
	size_t		i;
	bool		ok = rep->type == REDIS_REPLY_ARRAY;

	for (i = 0; ok && i < rep->elements; i++)
	{
		const redisReply *e = rep->element[i];

		ok = e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
			e->element[0]->type == REDIS_REPLY_INTEGER && e->element[1]->type == REDIS_REPLY_INTEGER &&
			e->element[0]->integer >= 0 && e->element[0]->integer <= e->element[1]->integer &&
			e->element[1]->integer < SLOTS && e->element[2]->type == REDIS_REPLY_ARRAY &&
			e->element[2]->elements >= 2 && e->element[2]->element[0]->type == REDIS_REPLY_STRING &&
			e->element[2]->element[1]->type == REDIS_REPLY_INTEGER;
	}
	if (!ok)
		return false;
	pthread_mutex_lock(&c->mutex);
	if ((ok = become_cluster(c)))
	{
		memset(c->slots, 0xFF, SLOTS * sizeof(int16_t));
		for (i = 0; ok && i < rep->elements; i++)
		{
			const redisReply *e = rep->element[i];
			const char *host = e->element[2]->element[0]->str;
			int			idx;
			long long	s;

			if (host[0] == '\0' || strcmp(host, "?") == 0)
				host = from->host;
			if ((idx = node_index(c, host, (int) e->element[2]->element[1]->integer)) < 0)
				ok = false;
			for (s = e->element[0]->integer; ok && s <= e->element[1]->integer; s++)
				c->slots[s] = (int16_t) idx;
		}
		c->stale = !ok;
	}
	pthread_mutex_unlock(&c->mutex);
	return ok;
}

/*
 * CLUSTER SLOTS on n: true with the map installed, false when n cannot be
 * reached (err filled) or is not a cluster (*single set).
 */
static bool
ask_map(pyr_redis *c, redis_node *n, int64_t deadline, bool *single, pyrate_error *err)
{
	redisReply *rep = NULL;
	bool		got = false;
	int			rc;

	pthread_mutex_lock(&n->mutex);
	if ((rc = node_connect(c, n, deadline, err)) == PYRATE_OK &&
		!(rep = redisCommand(n->ctx, "CLUSTER SLOTS")))
		rc = io_fail(n, err, "reading the cluster's slots");
	pthread_mutex_unlock(&n->mutex);
	if (rc != PYRATE_OK)
		return false;
	if (rep->type == REDIS_REPLY_ERROR)
		*single = true;
	else if (!(got = install_map(c, n, rep)))
		node_fail(n, err, PYRATE_ESERVER, "CLUSTER SLOTS", "unexpected reply");
	freeReplyObject(rep);
	return got;
}

/*
 * Reload the map from the first node that answers: those connected first
 * (alive a moment ago), then the others.  Failing, the map stays as it was.
 */
static void
reload_map(pyr_redis *c, int64_t deadline)
{
	int			pass;
	int			i;

	for (pass = 0; pass < 2; pass++)
		for (i = 0;; i++)
		{
			redis_node *n;
			bool		connected;
			bool		single = false;

			pthread_mutex_lock(&c->mutex);
			n = i < c->nnodes ? c->nodes[i] : NULL;
			pthread_mutex_unlock(&c->mutex);
			if (!n || ms_left(deadline) == 0)
				break;
			pthread_mutex_lock(&n->mutex);
			connected = n->ctx != NULL;
			pthread_mutex_unlock(&n->mutex);
			if (connected == (pass == 0) && ask_map(c, n, deadline, &single, NULL))
				return;
		}
}

/*
 * The node a call on slot goes to, and whether the server is a cluster.  At
 * first use, finds out whether the seed is a cluster (an error when it
 * cannot be reached); on a cluster, reloads a stale map first unless
 * another call is at it.
 */
static int
route(pyr_redis *c, int slot, int64_t deadline, redis_node **out, bool *cluster, pyrate_error *err)
{
	redis_mode	mode;
	bool		reload = false;

	pthread_mutex_lock(&c->mutex);
	mode = c->mode;
	if (mode == MODE_CLUSTER && c->stale && !c->reloading)
	{
		/* a reload that fails waits for the next MOVED or failure to try again */
		reload = c->reloading = true;
		c->stale = false;
	}
	if (mode == MODE_UNKNOWN || reload)
	{
		pthread_mutex_unlock(&c->mutex);
		if (mode == MODE_UNKNOWN)
		{
			bool		single = false;

			if (!ask_map(c, c->seed, deadline, &single, err) && !single)
				return err->code;
		}
		else
			reload_map(c, deadline);
		pthread_mutex_lock(&c->mutex);
		if (c->mode == MODE_UNKNOWN)
			c->mode = MODE_SINGLE;
		if (reload)
			c->reloading = false;
	}
	*out = slot_node(c, slot);
	*cluster = c->mode == MODE_CLUSTER;
	pthread_mutex_unlock(&c->mutex);
	return PYRATE_OK;
}

/*
 * A MOVED or ASK reply, "MOVED 3999 127.0.0.1:6381": the node named (added
 * when new; "" as host is from's).  MOVED also points the slot there, makes
 * the server a cluster if it was not and has the next call reload the map.
 * NULL on a reply of another shape, or out of memory.
 */
static redis_node *
redirect(pyr_redis *c, redis_node *from, const char *reply, bool moved)
{
	const char *at = strchr(reply, ' ');
	const char *colon = strrchr(reply, ':');
	char	   *end;
	long		slot = at ? strtol(at + 1, &end, 10) : -1;
	char		host[256];
	redis_node *to = NULL;
	int			idx;
	int			port;

	if (slot < 0 || slot >= SLOTS || *end != ' ' || !colon || colon < end ||
		(size_t) (colon - end - 1) >= sizeof(host) || (port = atoi(colon + 1)) <= 0)
		return NULL;
	memcpy(host, end + 1, colon - end - 1);
	host[colon - end - 1] = '\0';
	pthread_mutex_lock(&c->mutex);
	if (host[0] == '\0')
		snprintf(host, sizeof(host), "%s", from->host);
	if ((!moved || become_cluster(c)) && (idx = node_index(c, host, port)) >= 0)
	{
		to = c->nodes[idx];
		if (moved)
		{
			c->slots[slot] = (int16_t) idx;
			c->stale = true;
		}
	}
	pthread_mutex_unlock(&c->mutex);
	return to;
}

static void
mark_stale(pyr_redis *c)
{
	pthread_mutex_lock(&c->mutex);
	c->stale = true;
	pthread_mutex_unlock(&c->mutex);
}

/* ---- a call ---------------------------------------------------------- */

/* one RESP bulk string at p; returns the end */
static char *
put_bulk(char *p, const char *s, size_t len)
{
	*p++ = '$';
	p = pyr_redis_decimal(p, (int64_t) len);
	memcpy(p, "\r\n", 2);
	memcpy(p + 2, s, len);
	memcpy(p + 2 + len, "\r\n", 2);
	return p + len + 4;
}

/*
 * the command's size at most: a header and 4 + argc bulk strings (EVALSHA,
 * the sha, 1, the key and args of 20 bytes at most), each framed by at most
 * 25 bytes ($, its length, two CRLFs)
 */
static size_t
command_size(const pyr_redis_call *call)
{
	return 4 + (4 + call->argc) * 25 + 7 + 40 + 1 + call->key_len + call->argc * 20;
}

/*
 * EVALSHA in RESP at cmd; its length.  Formatted here: hiredis's formatting
 * (sds, a malloc) costs a put more than this.
 */
static size_t
format_call(char *cmd, const pyr_redis_call *call)
{
	char	   *p = cmd;
	int			i;

	*p++ = '*';
	p = pyr_redis_decimal(p, 4 + call->argc);
	memcpy(p, "\r\n", 2);
	p = put_bulk(p + 2, "EVALSHA", 7);
	p = put_bulk(p, call->script->sha, 40);
	p = put_bulk(p, "1", 1);
	p = put_bulk(p, call->key, call->key_len);
	for (i = 0; i < call->argc; i++)
		p = put_bulk(p, call->args[i], strlen(call->args[i]));
	return (size_t) (p - cmd);
}

/* SCRIPT LOAD on n, which must name it as we do.  Holds n's mutex. */
static int
load_script(redis_node *n, const pyr_script *s, pyrate_error *err)
{
	redisReply *rep = redisCommand(n->ctx, "SCRIPT LOAD %s", s->text);
	int			rc = PYRATE_OK;

	if (!rep)
		return io_fail(n, err, "loading the script");
	if (rep->type == REDIS_REPLY_ERROR)
		rc = node_fail(n, err, PYRATE_ESERVER, "SCRIPT LOAD failed", rep->str);
	else if (rep->type != REDIS_REPLY_STRING || rep->len != 40 || memcmp(rep->str, s->sha, 40) != 0)
		rc = node_fail(n, err, PYRATE_ESERVER, "SCRIPT LOAD failed", "the script came back under another name");
	freeReplyObject(rep);
	return rc;
}

/*
 * One try of call on n: connect, stamp, EVALSHA (ASKING first when asking),
 * and SCRIPT LOAD and EVALSHA again when n says NOSCRIPT.  *sent tells
 * whether the script may have run.  Holds n's mutex.
 */
static int
try_node(pyr_redis *c, redis_node *n, pyr_redis_call *call, bool asking, int timeout_ms,
		 int64_t deadline, char *cmd, redisReply **out, bool *sent, pyrate_error *err)
{
	int			loads;
	int			rc;

	if ((rc = node_connect(c, n, deadline, err)) != PYRATE_OK ||
		(rc = node_timeout(n, timeout_ms, err)) != PYRATE_OK)
		return rc;
	for (loads = 0;; loads++)
	{
		redisReply *rep = NULL;

		if (call->stamp)
		{
			if ((rc = node_clock(n, &call->ts, err)) != PYRATE_OK)
				return rc;
			*pyr_redis_decimal(call->stamp, call->ts) = '\0';
		}
		if ((asking && redisAppendCommand(n->ctx, "ASKING") != REDIS_OK) ||
			redisAppendFormattedCommand(n->ctx, cmd, format_call(cmd, call)) != REDIS_OK)
			return io_fail(n, err, "running the script");
		*sent = true;
		if (asking)
		{
			/* ASKING's +OK */
			if (redisGetReply(n->ctx, (void **) &rep) != REDIS_OK)
				return io_fail(n, err, "running the script");
			freeReplyObject(rep);
		}
		if (redisGetReply(n->ctx, (void **) &rep) != REDIS_OK)
			return io_fail(n, err, "running the script");
		if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && loads == 0)
		{
			/* it did not run: load it on this node and send it again */
			freeReplyObject(rep);
			*sent = false;
			if ((rc = load_script(n, call->script, err)) != PYRATE_OK)
				return rc;
			continue;
		}
		*out = rep;
		return PYRATE_OK;
	}
}

/* errors a cluster answers while it changes, waited out */
static bool
passing_error(const char *msg)
{
	return strncmp(msg, "CLUSTERDOWN", 11) == 0 || strncmp(msg, "TRYAGAIN", 8) == 0 ||
		strncmp(msg, "LOADING", 7) == 0;
}

int
pyr_redis_eval(pyr_redis *c, pyr_redis_call *call, redisReply **out, pyrate_error *err)
{
	int64_t		deadline = pyr_monotonic_us() + (int64_t) c->timeout_ms * 1000;
	size_t		size = command_size(call);
	char		stack[STACK_COMMAND];
	char	   *cmd = size <= sizeof(stack) ? stack : malloc(size);
	redis_node *n = NULL;		/* NULL: the node the map says */
	bool		cluster = false;
	bool		asking = false;
	int			redirects = 0;
	int			sleep_ms = 10;
	int			attempt;
	pyrate_error e;
	int			rc = PYRATE_OK;

	*out = NULL;
	if (!cmd)
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	pyr_clear_error(&e);
	for (attempt = 0;; attempt++)
	{
		redisReply *rep = NULL;
		bool		sent = false;
		int			left = ms_left(deadline);

		if (attempt > 0 && left == 0)
		{
			/* the last error (rc, e), or a redirection, says why */
			char		why[PYRATE_MSG_LEN];

			pyr_set_text(why, sizeof(why), rc != PYRATE_OK ? e.message : "redirected");
			rc = pyr_fail(&e, rc != PYRATE_OK ? rc : PYRATE_ETIMEOUT,
						  "redis cluster: slot %d not served within %d ms: %s", call->slot, c->timeout_ms, why);
			break;
		}
		if (!n && (rc = route(c, call->slot, deadline, &n, &cluster, &e)) != PYRATE_OK)
			break;
		pthread_mutex_lock(&n->mutex);
		/* the first try has the whole timeout, a retry what is left of it */
		rc = try_node(c, n, call, asking, attempt == 0 || left > c->timeout_ms ? c->timeout_ms : left,
					  deadline, cmd, &rep, &sent, &e);
		pthread_mutex_unlock(&n->mutex);
		if (rc == PYRATE_OK && rep->type != REDIS_REPLY_ERROR)
		{
			*out = rep;
			break;
		}
		if (rc == PYRATE_OK && (strncmp(rep->str, "MOVED ", 6) == 0 || strncmp(rep->str, "ASK ", 4) == 0))
		{
			asking = rep->str[0] == 'A';
			cluster = cluster || !asking;
			if (redirects++ == MAX_REDIRECTS)
				rc = pyr_fail(&e, PYRATE_EBACKEND, "redis cluster: %s: too many redirections", rep->str);
			else if (!(n = redirect(c, n, rep->str, !asking)))
				rc = pyr_fail(&e, PYRATE_EBACKEND, "redis cluster: cannot follow %s", rep->str);
			freeReplyObject(rep);
			if (rc != PYRATE_OK)
				break;
			continue;
		}
		if (rc == PYRATE_OK && !(cluster && passing_error(rep->str)))
		{
			rc = pyr_fail(&e, PYRATE_ESERVER, "redis: %s", rep->str);
			freeReplyObject(rep);
			break;
		}
		/*
		 * A cluster changing, or a node that cannot be reached: the map again
		 * after a pause.  Never a script that may have run.
		 */
		if (rc == PYRATE_OK)
		{
			rc = pyr_fail(&e, PYRATE_EBACKEND, "%s", rep->str);
			freeReplyObject(rep);
		}
		else if (!cluster || sent || rc == PYRATE_ENOMEM || rc == PYRATE_ESERVER)
		{
			if (cluster)
				mark_stale(c);
			break;
		}
		mark_stale(c);
		n = NULL;
		asking = false;
		if ((left = ms_left(deadline)) > 0)
			pyr_sleep_ms(left < sleep_ms ? left : sleep_ms);
		sleep_ms = sleep_ms < 100 ? sleep_ms * 2 : 200;
	}
	if (cmd != stack)
		free(cmd);
	return rc == PYRATE_OK ? PYRATE_OK : pyr_forward(err, &e, rc);
}
