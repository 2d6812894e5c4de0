/*
 * test_redis_cluster.c — the Redis bucket on a real Redis Cluster (suite
 * 52-redis-cluster starts one: three masters with a replica each).
 *
 *   test_redis_cluster PORT basics
 *   test_redis_cluster PORT load PREFIX SLOTS COMMAND [lossy]
 *   test_redis_cluster PORT down MASTER-PORT COMMAND
 *
 * PORT is any live node, for the test's own look at the cluster.
 *
 * basics: keys on every master, reached through any node, a replica too;
 * ASK and MOVED while the test moves a slot by hand; no redirection once the
 * map is loaded (CRC16 and {hash tags} as the server computes them); NOSCRIPT
 * per node; the keyed factory's one key per name, spread over the masters.
 *
 * load: 16 clients, each a limiter of its own, on a hot key (its slot in
 * SLOTS, "FROM-TO") and on 32 others, while COMMAND (run with system()
 * after 1.5 s) changes the cluster; then every window of every key, read
 * back from the stored items, holds at most its limit, and the units stored
 * are the units admitted (give or take puts whose fate their client could
 * not know).  With lossy (an unclean failover), what was admitted and is no
 * longer stored is measured and reported, not failed.
 *
 * down: COMMAND stops MASTER-PORT and its replica; a key there cannot be
 * reached (fail open admits, fail closed rejects), and once the cluster says
 * CLUSTERDOWN, neither can any key: the fail modes decide again.
 */
#include "shared.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>

static int	seed_port;
static redisContext *seed;

/* ---- the test's own look at the cluster ------------------------------- */

/* connections to the nodes, by port, opened on first use */
static redisContext *nodes[16];
static int	node_ports[16];

static redisContext *
node(int port)
{
	int			i;

	for (i = 0; i < 16 && node_ports[i]; i++)
		if (node_ports[i] == port)
			return nodes[i];
	if (i == 16)
		return NULL;
	node_ports[i] = port;
	nodes[i] = redisConnect("127.0.0.1", port);
	return nodes[i];
}

static void
close_nodes(void)
{
	int			i;

	for (i = 0; i < 16 && node_ports[i]; i++)
		redisFree(nodes[i]);
}

/* a command with an integer reply on the node at port; -99 on anything else */
static long long
node_int(int port, const char *fmt, ...)
{
	redisContext *c = node(port);
	redisReply *r = NULL;
	long long	v;
	va_list		ap;

	if (c)
	{
		va_start(ap, fmt);
		r = redisvCommand(c, fmt, ap);
		va_end(ap);
	}
	v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
	freeReplyObject(r);
	return v;
}

static int
key_slot(const char *key)
{
	return (int) node_int(seed_port, "CLUSTER KEYSLOT %s", key);
}

/* the master serving slot, by the cluster's own CLUSTER SLOTS; 0 when none */
static int
slot_owner(int slot)
{
	redisReply *r = redisCommand(seed, "CLUSTER SLOTS");
	int			port = 0;
	size_t		i;

	for (i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		if (r->element[i]->element[0]->integer <= slot && slot <= r->element[i]->element[1]->integer)
			port = (int) r->element[i]->element[2]->element[1]->integer;
	freeReplyObject(r);
	return port;
}

/* the masters' ports, by their first slot; how many */
static int
masters(int *ports, int max)
{
	int			n = 0;
	int			slot;

	for (slot = 0; slot < 16384; slot += 64)
	{
		int			p = slot_owner(slot);
		int			i;

		for (i = 0; i < n && ports[i] != p; i++)
			;
		if (i == n && n < max && p)
			ports[n++] = p;
	}
	return n;
}

/* the count in "errorstat_WHAT:count=N" of INFO errorstats on port */
static long
errorstat(int port, const char *what)
{
	redisContext *c = node(port);
	redisReply *r = c ? redisCommand(c, "INFO errorstats") : NULL;
	char		field[64];
	const char *at;
	long		n = 0;

	snprintf(field, sizeof(field), "errorstat_%s:count=", what);
	if (r && r->type == REDIS_REPLY_STRING && (at = strstr(r->str, field)))
		n = atol(at + strlen(field));
	freeReplyObject(r);
	return n;
}

/* a name (prefix + "base<i>") whose key's slot is in [from, to] */
static bool
name_in_slots(const char *prefix, const char *base, int from, int to, char *name, size_t len)
{
	int			i;

	for (i = 0; i < 100000; i++)
	{
		char		key[256];
		int			slot;

		snprintf(name, len, "%s%d", base, i);
		snprintf(key, sizeof(key), "%s%s", prefix, name);
		slot = key_slot(key);
		if (slot >= from && slot <= to)
			return true;
	}
	return false;
}

/* a name whose key is served by the master at port */
static bool
name_on(const char *prefix, const char *base, int port, char *name, size_t len)
{
	int			i;

	for (i = 0; i < 1000; i++)
	{
		char		key[256];
		char		b[64];

		snprintf(b, sizeof(b), "%s%d_", base, i);
		if (!name_in_slots(prefix, b, 0, 16383, name, len))
			return false;
		snprintf(key, sizeof(key), "%s%s", prefix, name);
		if (slot_owner(key_slot(key)) == port)
			return true;
	}
	return false;
}

static pyrate_factory *
redis_factory(int port, const char *prefix, int timeout_ms, pyrate_error *e)
{
	pyrate_redis_options o = {"127.0.0.1", port, NULL, NULL, prefix, timeout_ms, 3600000};

	return pyrate_redis_factory_new(rates_3s, 2, &o, -1, e);
}

/* the factory's bucket for name */
static pyrate_bucket *
bucket_of(pyrate_factory *f, const char *name)
{
	pyrate_item item = {name, PYRATE_NOW, 1};
	pyrate_bucket *b = NULL;
	pyrate_error e;

	pyrate_factory_get(f, &item, &b, &e);
	return b;
}

static int
put_now(pyrate_bucket *b, pyrate_decision *d, pyrate_error *e)
{
	pyrate_item item = {"x", PYRATE_NOW, 1};

	return pyrate_put(b, &item, d, e);
}

/* ---- basics -------------------------------------------------------------- */

/* every master, through a node that is not its own, a replica too */
static void
test_spread(const int *m, int nm)
{
	pyrate_error e = {0};
	int			i;

	for (i = 0; i < nm; i++)
	{
		pyrate_redis_options o = {"127.0.0.1", m[(i + 1) % nm], NULL, NULL, NULL, 5000, 3600000};
		char		name[64];
		char		key[128];
		pyrate_bucket *b;
		char		kind[64];

		if (!name_on("pyrate:sem:", "m", m[i], name, sizeof(name)))
		{
			CHECK(false, "a key on master %d", m[i]);
			continue;
		}
		snprintf(key, sizeof(key), "pyrate:sem:%s", name);
		o.key = key;
		snprintf(kind, sizeof(kind), "cluster, key on %d, seed %d", m[i], o.port);
		b = pyrate_redis_bucket_new(rates_3s, 2, &o, &e);
		test_bucket_semantics(kind, b);
		pyrate_put(b, &(pyrate_item) {"x", 5000, 2}, NULL, &e);
		CHECK(node_int(m[i], "EXISTS %s", key) == 1, "%s: the key is stored on %d", kind, m[i]);
		pyrate_flush(b, NULL);
		pyrate_close(b);
	}
}

/* ASK and MOVED: the test moves a key's slot from its master to another by hand */
static void
test_redirects(const int *m)
{
	pyrate_error e = {0};
	pyrate_redis_options o = {"127.0.0.1", m[0], NULL, NULL, NULL, 5000, 3600000};
	pyrate_rate r100 = {100, 60000};
	char		name[64];
	char		key[128];
	char		from_id[64] = "";
	char		to_id[64] = "";
	pyrate_bucket *b;
	pyrate_decision d;
	redisReply *r;
	int			slot;
	int			i;
	int64_t		n = -1;
	long		ask0;
	long		moved0;

	if (!name_on("pyrate:move:", "k", m[1], name, sizeof(name)))
	{
		CHECK(false, "a key on master %d", m[1]);
		return;
	}
	snprintf(key, sizeof(key), "pyrate:move:%s", name);
	slot = key_slot(key);
	o.key = key;
	b = pyrate_redis_bucket_new(&r100, 1, &o, &e);
	CHECK(put_now(b, &d, &e) == PYRATE_OK && d.acquired, "a put on %s (slot %d, on %d)", key, slot, m[1]);
	for (i = 0; i < 2; i++)
	{
		r = redisCommand(node(m[1 + i]), "CLUSTER MYID");
		snprintf(i == 0 ? from_id : to_id, 64, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "?");
		freeReplyObject(r);
	}
	ask0 = errorstat(m[1], "ASK");
	moved0 = errorstat(m[1], "MOVED");
	freeReplyObject(redisCommand(node(m[2]), "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id));
	freeReplyObject(redisCommand(node(m[1]), "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id));
	CHECK(put_now(b, &d, &e) == PYRATE_OK && d.acquired, "slot migrating, the key still on %d: put", m[1]);
	r = redisCommand(node(m[1]), "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", m[2], "", key);
	CHECK(r && r->type == REDIS_REPLY_STATUS, "MIGRATE the key to %d: %s", m[2], r ? r->str : "no reply");
	freeReplyObject(r);
	CHECK(put_now(b, &d, &e) == PYRATE_OK && d.acquired, "the key migrated: put (ASK followed)%s%s",
		  e.message[0] ? ": " : "", e.message);
	CHECK(errorstat(m[1], "ASK") == ask0 + 1, "%d answered ASK once", m[1]);
	CHECK(node_int(m[2], "CLUSTER COUNTKEYSINSLOT %d", slot) == 1 && pyrate_count(b, &n, &e) == PYRATE_OK &&
		  n == 3, "the key is on %d, its 3 units read through ASK (%" PRId64 ")", m[2], n);
	for (i = 0; i < 3; i++)
		freeReplyObject(redisCommand(node(m[i]), "CLUSTER SETSLOT %d NODE %s", slot, to_id));
	CHECK(put_now(b, &d, &e) == PYRATE_OK && d.acquired, "the slot moved: put (MOVED followed)%s%s",
		  e.message[0] ? ": " : "", e.message);
	CHECK(errorstat(m[1], "MOVED") > moved0, "%d answered MOVED", m[1]);
	moved0 = errorstat(m[1], "MOVED");
	ask0 = errorstat(m[1], "ASK");
	CHECK(put_now(b, &d, &e) == PYRATE_OK && d.acquired && d.remaining == 95 &&
		  pyrate_count(b, &n, &e) == PYRATE_OK && n == 5,
		  "then the bucket goes to %d directly: 5 units, 95 left (%" PRId64 ", %" PRId64 ")", m[2], n, d.remaining);
	CHECK(errorstat(m[1], "MOVED") == moved0 && errorstat(m[1], "ASK") == ask0, "no redirection since");
	pyrate_flush(b, NULL);
	pyrate_close(b);
}

/*
 * the keyed factory: one key per name (prefix + name) on the master its
 * slot says, {hash tags} as the server hashes them, no redirection once the
 * map is loaded, and a node that lost the script sent it again
 */
static void
test_factory(const int *m, int nm)
{
	pyrate_error e = {0};
	pyrate_factory *f = redis_factory(m[0], "pyrate:fac:", 5000, &e);
	static const char *const tagged[] = {"user:{42}:api", "user:{42}:upload", "{}x", "a{}b{c}", "{tag", "x}{y}"};
	int			per_master[8] = {0};
	long		redirected = 0;
	int			misplaced = 0;
	int			failed = 0;
	int			i;
	int			j;

	CHECK(f != NULL, "a Redis factory on the cluster");
	if (!f)
		return;
	/* the first call loads the map; the statistics start after it */
	put_now(bucket_of(f, "warmup"), NULL, NULL);
	for (j = 0; j < nm; j++)
		freeReplyObject(redisCommand(node(m[j]), "CONFIG RESETSTAT"));
	for (i = 0; i < 206; i++)
	{
		char		name[64];
		char		key[128];
		pyrate_decision d;
		int			owner;

		if (i < 200)
			snprintf(name, sizeof(name), "n%d", i);
		else
			snprintf(name, sizeof(name), "%s", tagged[i - 200]);
		snprintf(key, sizeof(key), "pyrate:fac:%s", name);
		failed += put_now(bucket_of(f, name), &d, &e) != PYRATE_OK || !d.acquired;
		owner = slot_owner(key_slot(key));
		misplaced += node_int(owner, "EXISTS %s", key) != 1;
		for (j = 0; j < nm; j++)
			per_master[j] += m[j] == owner;
	}
	for (j = 0; j < nm; j++)
		redirected += errorstat(m[j], "MOVED") + errorstat(m[j], "ASK");
	CHECK(failed == 0 && misplaced == 0, "206 names, 206 keys pyrate:fac:NAME, each on the master of its slot "
		  "(%d failed, %d misplaced)", failed, misplaced);
	CHECK(per_master[0] > 30 && per_master[1] > 30 && per_master[2] > 30,
		  "the names spread over the masters: %d, %d, %d", per_master[0], per_master[1], per_master[2]);
	CHECK(redirected == 0, "no MOVED or ASK once the map was loaded: the client's slots are the server's (%ld)",
		  redirected);
	CHECK(key_slot("pyrate:fac:user:{42}:api") == key_slot("pyrate:fac:user:{42}:upload"),
		  "names with one {hash tag} share a slot");

	/* every node forgets the script: each says NOSCRIPT once and gets it */
	for (j = 0; j < nm; j++)
		freeReplyObject(redisCommand(node(m[j]), "SCRIPT FLUSH"));
	for (i = failed = 0; i < 30; i++)
	{
		char		name[64];
		pyrate_decision d;

		snprintf(name, sizeof(name), "n%d", i);
		failed += put_now(bucket_of(f, name), &d, &e) != PYRATE_OK || !d.acquired;
	}
	for (j = 0; j < nm; j++)
		CHECK(errorstat(m[j], "NOSCRIPT") == 1, "after SCRIPT FLUSH, %d said NOSCRIPT once (%ld)", m[j],
			  errorstat(m[j], "NOSCRIPT"));
	CHECK(failed == 0, "and every put went through (%d failed)", failed);
	pyrate_factory_free(f);
}

/* a live replica's port, from CLUSTER NODES; 0 when none */
static int
a_replica(void)
{
	redisReply *r = redisCommand(seed, "CLUSTER NODES");
	const char *line = r && r->type == REDIS_REPLY_STRING ? r->str : "";
	int			port = 0;

	/* "<id> <ip>:<port>@<bus port> <flags> <master id> ..." */
	for (; *line && !port; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "")
	{
		char		addr[64];
		char		flags[128];

		if (sscanf(line, "%*s %63s %127s", addr, flags) == 2 && strstr(flags, "slave") &&
			!strstr(flags, "fail") && strchr(addr, ':'))
			port = atoi(strchr(addr, ':') + 1);
	}
	freeReplyObject(r);
	return port;
}

/* a replica as the address given; the one-call limiter, one key per name */
static void
test_limiter(void)
{
	pyrate_error e = {0};
	int			replica = a_replica();
	pyrate_limiter *l;
	bool		ok;
	int			got = 0;
	int			i;

	CHECK(replica > 0, "a replica to start from (%d)", replica);
	l = pyrate_limiter_new_redis(rates_3s, 2, "127.0.0.1", replica, 10, &e);
	for (i = 0; l && i < 5; i++)
		if (pyrate_try_acquire(l, "lim", 1, false, -1, &ok, NULL, &e) == PYRATE_OK && ok)
			got++;
	CHECK(got == 3, "pyrate_limiter_new_redis through replica %d: 3/s admits 3 of 5 (%d)", replica, got);
	CHECK(node_int(slot_owner(key_slot("pyrate:lim")), "EXISTS %s", "pyrate:lim") == 1,
		  "its bucket is the key pyrate:lim, on the master of its slot");
	pyrate_limiter_free(l);
}

/* ---- load: 16 clients while the cluster changes ------------------------- */

#define CLIENTS 16
#define NKEYS 33				/* the hot key and 32 others */

static const pyrate_rate load_rates[2] = {{5, 100}, {20, 1000}};

typedef struct client
{
	pthread_t	thread;
	pyrate_limiter *l;
	char		(*names)[64];
	volatile int *stop;
	unsigned	seed;
	int64_t		admitted[NKEYS];
	int64_t		unknown[NKEYS]; /* units of puts that failed: stored or not */
	int			puts;
	int			failed;
	char		error[PYRATE_MSG_LEN];
} client;

static void *
client_main(void *arg)
{
	client	   *c = arg;
	int			i;

	for (i = 0; !__atomic_load_n(c->stop, __ATOMIC_ACQUIRE); i++)
	{
		pyrate_acquire_info info;
		pyrate_error e = {0};
		int			k;
		int64_t		w = 1 + i % 3;
		bool		ok = false;

		c->seed = c->seed * 1103515245 + 12345;
		k = i % 2 == 0 ? 0 : 1 + (int) ((c->seed >> 16) % (NKEYS - 1));
		c->puts++;
		if (pyrate_try_acquire(c->l, c->names[k], w, false, -1, &ok, &info, &e) != PYRATE_OK)
			info.outcome = PYRATE_FAILED_CLOSED;
		if (info.outcome == PYRATE_ACQUIRED)
			c->admitted[k] += w;
		else if (info.outcome == PYRATE_FAILED_CLOSED)
		{
			c->failed++;
			c->unknown[k] += w;
			if (!c->error[0])
				snprintf(c->error, sizeof(c->error), "%s", info.backend_error.message[0] ?
						 info.backend_error.message : e.message);
		}
		usleep(200 + (i % 5) * 100);
	}
	return NULL;
}

static int
load(const char *prefix, const char *slots, const char *command, bool lossy)
{
	static client clients[CLIENTS];
	static char names[NKEYS][64];
	int			owner[NKEYS];	/* the master of each key's slot at the start */
	pyrate_redis_options o = {"127.0.0.1", seed_port, NULL, NULL, prefix, 5000, 3600000};
	pyrate_error e = {0};
	pyrate_factory *check;
	volatile int stop = 0;
	int64_t		start;
	int64_t		admitted = 0;
	int64_t		unknown = 0;
	int64_t		stored = 0;
	int64_t		lost = 0;
	int64_t		extra = 0;
	int64_t		on_hot_master = 0;	/* admitted on keys of the hot key's master */
	int			from = 0;
	int			to = 16383;
	int			over = 0;
	int			puts = 0;
	int			failed = 0;
	int			status;
	int			i;
	int			k;
	char		why[256] = "";
	char		error[PYRATE_MSG_LEN] = "";

	if (sscanf(slots, "%d-%d", &from, &to) != 2 ||
		!name_in_slots(prefix, "hot", from, to, names[0], sizeof(names[0])))
	{
		CHECK(false, "a hot key in slots %s", slots);
		return tap_end();
	}
	for (k = 0; k < NKEYS; k++)
	{
		char		key[128];

		if (k > 0)
			snprintf(names[k], sizeof(names[k]), "k%d", k);
		snprintf(key, sizeof(key), "%.60s%.60s", prefix, names[k]);
		owner[k] = slot_owner(key_slot(key));
	}
	for (i = 0; i < CLIENTS; i++)
	{
		pyrate_factory *f = pyrate_redis_factory_new(load_rates, 2, &o, -1, &e);

		clients[i].l = f ? pyrate_limiter_new(f, NULL, &e) : NULL;
		clients[i].names = names;
		clients[i].stop = &stop;
		clients[i].seed = 7 + i;
		if (!clients[i].l || pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) != 0)
		{
			CHECK(false, "client %d: %s", i, e.message);
			return tap_end();
		}
	}
	start = tap_ms();
	usleep(1500000);
	status = system(command);
	CHECK(status == 0, "under load, ran: %s (%d s)", command, (int) ((tap_ms() - start) / 1000));
	usleep(1500000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < CLIENTS; i++)
	{
		pthread_join(clients[i].thread, NULL);
		pyrate_limiter_free(clients[i].l);
		puts += clients[i].puts;
		failed += clients[i].failed;
		if (!error[0] && clients[i].error[0])
			snprintf(error, sizeof(error), "%s", clients[i].error);
	}
	printf("# %d clients, %d puts in %.1f s, %d failed%s%s\n", CLIENTS, puts, (tap_ms() - start) / 1000.0,
		   failed, error[0] ? ", the first: " : "", error);

	/* every key read back, through a factory of its own */
	check = pyrate_redis_factory_new(load_rates, 2, &o, -1, &e);
	for (k = 0; k < NKEYS; k++)
	{
		int64_t		a = 0;
		int64_t		u = 0;
		int64_t		units = 0;
		pyrate_bucket *b = check ? bucket_of(check, names[k]) : NULL;
		char		kwhy[256] = "";

		for (i = 0; i < CLIENTS; i++)
		{
			a += clients[i].admitted[k];
			u += clients[i].unknown[k];
		}
		if (!b || !tap_windows_ok(b, load_rates, 2, &units, kwhy, sizeof(kwhy)))
		{
			over++;
			if (!why[0])
				snprintf(why, sizeof(why), "%.60s: %.180s", names[k], b ? kwhy : "no bucket");
		}
		admitted += a;
		on_hot_master += owner[k] == owner[0] ? a : 0;
		unknown += u;
		stored += units;
		/* admitted and gone; stored and never admitted (a failed put that ran) */
		lost += units < a ? a - units : 0;
		extra += units > a + u ? units - a - u : 0;
		if (k == 0)
		{
			char		key[128];

			snprintf(key, sizeof(key), "%s%s", prefix, names[0]);
			printf("# hot key %s (slot %d): %" PRId64 " units admitted, %" PRId64 " stored\n", key,
				   key_slot(key), a, units);
		}
	}
	pyrate_factory_free(check);
	CHECK(over == 0, "%d keys, the hot one among them: no window over its limit in the stored items %s",
		  NKEYS, why);
	CHECK(admitted > 200, "%" PRId64 " units admitted", admitted);
	CHECK(extra == 0, "nothing stored that no client was told of, or failed to be told of (%" PRId64 ")",
		  extra);
	if (lossy)
	{
		printf("# measured: %" PRId64 " admitted units lost (acknowledged, then gone with the old master), "
			   "of %" PRId64 " admitted on the keys master %d served (%" PRId64 " on all keys); %" PRId64
			   " units of failed puts\n", lost, on_hot_master, owner[0], admitted, unknown);
		CHECK(true, "the unclean failover lost %" PRId64 " acknowledged units of %" PRId64, lost, on_hot_master);
	}
	else
		CHECK(lost == 0, "every admitted unit is stored (%" PRId64 " lost; %" PRId64 " stored of %" PRId64
			  " admitted, %" PRId64 " of failed puts)", lost, stored, admitted, unknown);
	return tap_end();
}

/* ---- down: no node for a key, then CLUSTERDOWN --------------------------- */

/* one acquire of name through each limiter: l[0] fails open, l[1] closed */
static void
fail_modes(pyrate_limiter **l, const char *name, const char *what, const char *want)
{
	int			i;

	for (i = 0; i < 2; i++)
	{
		pyrate_acquire_info info;
		pyrate_error e = {0};
		bool		ok = false;
		int64_t		start = tap_ms();
		int			rc = pyrate_try_acquire(l[i], name, 1, false, -1, &ok, &info, &e);
		int64_t		took = tap_ms() - start;

		CHECK(rc == PYRATE_OK && ok == (i == 0) &&
			  info.outcome == (i == 0 ? PYRATE_FAILED_OPEN : PYRATE_FAILED_CLOSED) &&
			  info.backend_error.code == PYRATE_EBACKEND && strstr(info.backend_error.message, want) &&
			  took < 4000, "%s, fail %s: %s in %" PRId64 " ms (%s)", what, i == 0 ? "open" : "closed",
			  ok ? "admitted" : "rejected", took, info.backend_error.message);
	}
}

static int
down(int master, const char *command)
{
	pyrate_error e = {0};
	pyrate_limiter_options modes[2] = {{-1, PYRATE_FAIL_OPEN}, {-1, PYRATE_FAIL_CLOSED}};
	pyrate_limiter *l[2];
	int			m[8];
	int			nm = masters(m, 8);
	int			live = m[0] == master ? m[1] : m[0];
	char		dead_name[64];
	char		live_name[64];
	pyrate_decision d;
	int64_t		start;
	bool		clusterdown = false;
	int			rc;
	int			i;

	if (nm < 2 || !name_on("pyrate:down:", "d", master, dead_name, sizeof(dead_name)) ||
		!name_on("pyrate:down:", "l", live, live_name, sizeof(live_name)))
	{
		CHECK(false, "keys on %d and on another master", master);
		return tap_end();
	}
	for (i = 0; i < 2; i++)
	{
		l[i] = pyrate_limiter_new(redis_factory(live, "pyrate:down:", 1000, &e), &modes[i], &e);
		/* each knows the map */
		put_now(bucket_of(pyrate_limiter_factory(l[i]), live_name), &d, NULL);
	}
	CHECK(system(command) == 0, "stopped master %d and its replica: %s", master, command);
	fail_modes(l, dead_name, "a key on the stopped master", "redis");
	rc = put_now(bucket_of(pyrate_limiter_factory(l[0]), dead_name), &d, &e);
	CHECK(rc == PYRATE_EBACKEND && strstr(e.message, "not served within 1000 ms"),
		  "pyrate_put: %s, %s", pyrate_code_name(rc), e.message);
	/* the cluster sees the master fail after its node timeout, then refuses every key */
	for (start = tap_ms(); tap_ms() - start < 60000 && !clusterdown; usleep(200000))
	{
		redisReply *r = redisCommand(node(live), "CLUSTER INFO");

		clusterdown = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:fail");
		freeReplyObject(r);
	}
	CHECK(clusterdown, "the cluster says it is down (%.1f s)", (tap_ms() - start) / 1000.0);
	fail_modes(l, live_name, "CLUSTERDOWN on a live master", "CLUSTERDOWN");
	pyrate_limiter_free(l[0]);
	pyrate_limiter_free(l[1]);
	return tap_end();
}

int
main(int argc, char **argv)
{
	int			m[8];
	int			nm;
	int			rc;

	if (argc < 3)
	{
		fprintf(stderr, "usage: test_redis_cluster PORT basics|load|down ...\n");
		return 2;
	}
	seed_port = atoi(argv[1]);
	seed = redisConnect("127.0.0.1", seed_port);
	if (!seed || seed->err)
	{
		printf("not ok - cannot reach redis at 127.0.0.1:%d\n0 passed, 1 failed\n", seed_port);
		return 1;
	}
	if (strcmp(argv[2], "load") == 0 && argc >= 6)
		rc = load(argv[3], argv[4], argv[5], argc > 6 && strcmp(argv[6], "lossy") == 0);
	else if (strcmp(argv[2], "down") == 0 && argc >= 5)
		rc = down(atoi(argv[3]), argv[4]);
	else
	{
		nm = masters(m, 8);
		CHECK(nm == 3, "three masters: %d, %d, %d", m[0], m[1], m[2]);
		if (nm == 3)
		{
			test_spread(m, nm);
			test_redirects(m);
			test_factory(m, nm);
			test_limiter();
		}
		rc = tap_end();
	}
	close_nodes();
	redisFree(seed);
	return rc;
}
