/*
 * engine_memory.c — the "memory" storage engine: buckets in shared memory.
 *
 * A bucket is (database, name) -> a pyr_log (the algorithm module's ring of
 * (timestamp, cumulative units) entries, 16 bytes per stored item).  Buckets
 * hang off a fixed directory of chain heads in pyrate's shared memory
 * (memory_arena.c).  A bucket holding one item keeps it in its own entry (a
 * one-use key costs one block of the DSA area, 48 to 64 bytes for names of
 * up to 23 bytes); from the second item on, the items live in a ring of their
 * own, a separate block that starts with room for two and doubles when full,
 * so memory follows the items actually stored, never the limit.  A leak
 * halves the ring once a quarter is used, and goes back to the entry when
 * one item is left.  An empty bucket keeps only its entry (its name) until a
 * leak reclaims it, it is disposed of, its database or pyrate is dropped, or
 * memory runs short.
 *
 * Locking (see PyrateShared): the partition lock of the name's hash guards
 * the chain, the bucket and its log.  It is held for one lookup and one
 * O(log n) decision, plus an allocation when the log grows; the caller never
 * sleeps with it.  Errors are raised after it is released.
 *
 * When the area is full, an acquire evicts every bucket that has leaked
 * empty (one partition at a time, holding no other lock) and tries once
 * more; a bucket that exists may then grow into the reserve (see
 * pyrate_reserve_whole), and otherwise the acquire fails with SQLSTATE 53200.
 * A new bucket is refused while any of the reserve is out, and a database's
 * buckets stop growing at its share (pyrate.memory_database_share).  A
 * failed allocation changes nothing: a log grows by copying into a new block
 * before the old is freed.
 *
 * With slots, a put now and then merges the ring's entries older than the
 * smallest window in place (pyr_log_compact), under the same lock.
 *
 * Non-transactional: a stored item stays whatever becomes of the caller's
 * transaction, as in pyrate-limiter's own buckets.
 *
 * Durable buckets (their definition's durable, the default since 1.4; the
 * bucket's PYRATE_GROUP_DURABLE bit once a durable put touched it): each
 * change is WAL-logged under the partition lock right after it is made, and
 * the partition's lsn becomes the record's end (memory_wal.h).  Recovery
 * and standbys replay the records through the redo functions below, which
 * repeat exactly what the change did.  During recovery a durable bucket is
 * the primary's: it is read, never changed but by redo.
 */
#include "engine_memory.h"

#include <limits.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "memory_arena.h"
#include "memory_file.h"
#include "memory_wal.h"

typedef struct MemBucket
{
	dsa_pointer next;			/* next on the chain */
	dsa_pointer log;			/* the ring (2 or more items); else Invalid */
	int64		one_ts;			/* without a ring: the one item, if one_weight > 0 */
	Oid			dbid;
	uint32		hash;
	int32		one_weight;		/* 0: no item here */
	uint16		namelen;		/* at most PYRATE_MAX_NAME */
	uint16		group;			/* counted in group_buckets[group & PYRATE_GROUP_MASK]
								 * (0: nowhere); PYRATE_GROUP_DURABLE: logged */
	char		name[FLEXIBLE_ARRAY_MEMBER];	/* namelen bytes, then NUL */
} MemBucket;

StaticAssertDecl(PYRATE_MAX_NAME <= PG_UINT16_MAX, "a bucket name's length fits its uint16");
StaticAssertDecl(PYR_MAX_WEIGHT <= PG_INT32_MAX, "an item's weight fits one_weight");
StaticAssertDecl(PYRATE_GROUPS <= PG_UINT16_MAX, "a group fits a bucket's uint16");

/* A one-item log on the stack: how a bucket without a ring is read. */
typedef union OneLog
{
	int64		align;
	char		bytes[sizeof(pyr_log) + sizeof(pyr_entry)];
} OneLog;

#define BUCKET_SIZE(namelen) (offsetof(MemBucket, name) + (namelen) + 1)

/* largest ring: capacities are powers of two in a uint32 */
#define MAX_CAP (UINT32_C(1) << 31)

typedef struct Key
{
	Oid			dbid;
	const char *name;
	uint32		namelen;
	uint32		hash;
} Key;

/* where a bucket sits: its directory head, the link pointing at it, the bucket */
typedef struct Slot
{
	uint32		head;
	dsa_pointer *link;
	dsa_pointer dp;
	MemBucket  *b;
} Slot;


/* a database whose buckets go when the current transaction commits */
static Oid	clear_at_commit = InvalidOid;
static SubTransactionId clear_subid = InvalidSubTransactionId;


bool
pyrate_memory_available(void)
{
	return pyrate_shared != NULL;
}

static void
key_init(Key *k, Oid dbid, const char *name)
{
	uint64		h;

	k->dbid = dbid;
	k->name = name;
	k->namelen = (uint32) strlen(name);
	h = hash_bytes_extended((const unsigned char *) name, k->namelen, dbid);
	k->hash = (uint32) (h ^ (h >> 32));
}

static inline int
partition_of(uint32 hash)
{
	return hash & (PYRATE_PARTITIONS - 1);
}

static inline LWLock *
partition_lock(int p)
{
	return &pyrate_locks[p].lock;
}

static inline PyratePartition *
partition(int p)
{
	return &pyrate_shared->parts[p];
}

/* A change of partition p was logged: its record ends at end. */
static inline void
mark_logged(int p, XLogRecPtr end)
{
	partition(p)->lsn = end;
	partition(p)->logged = end;
}

static inline pg_atomic_uint64 *
db_bytes(Oid dbid)
{
	return &pyrate_shared->db_bytes[dbid % PYRATE_DB_SLOTS];
}

/* Bytes allocated (delta > 0) or freed for a bucket of dbid, in partition part. */
static inline void
account(PyratePartition *part, Oid dbid, int64 delta)
{
	part->bytes += delta;
	(void) pg_atomic_fetch_add_u64(db_bytes(dbid), delta);
}

/* Head h holds a bucket (set) or none (clear): its partition lock is held. */
static inline void
mark_head(uint32 h, bool set)
{
	uint32		hpp = pyrate_heads_per_partition();
	uint32		i = h % hpp;
	uint64	   *w = &pyrate_occupied[(Size) (h / hpp) * PYRATE_OCCUPIED_WORDS(hpp) + i / 64];

	if (set)
		*w |= UINT64CONST(1) << (i % 64);
	else
		*w &= ~(UINT64CONST(1) << (i % 64));
}

/*
 * The first head of partition p at or after h (a head of p, or p's end)
 * that holds a bucket; p's end when none.  Its lock is held.
 */
static uint32
occupied_from(int p, uint32 h)
{
	uint32		hpp = pyrate_heads_per_partition();
	uint32		first = (uint32) p * hpp;
	const uint64 *w = &pyrate_occupied[(Size) p * PYRATE_OCCUPIED_WORDS(hpp)];
	uint32		i;

	for (i = h - first; i < hpp; i = (i | 63) + 1)
	{
		uint64		bits = w[i / 64] >> (i % 64);

		if (bits != 0)
			return first + i + pg_rightmost_one_pos64(bits);
	}
	return first + hpp;
}

/* partition p's heads that hold a bucket, its lock held */
#define foreach_occupied(p, h) \
	for ((h) = occupied_from((p), (uint32) (p) * pyrate_heads_per_partition()); \
		 (h) < (uint32) ((p) + 1) * pyrate_heads_per_partition(); \
		 (h) = occupied_from((p), (h) + 1))

/*
 * A read prefetch.  GCC 12 at -O2 drops __builtin_prefetch calls from an
 * inlined function with a branch in it (prefetch_bucket below lost all of
 * them), so on x86 it is the instruction itself.
 */
#if defined(__x86_64__) || defined(__i386__)
#define PREFETCH(addr) __asm__ __volatile__("prefetcht0 %0" : : "m" (*(const char *) (addr)))
#else
#define PREFETCH(addr) __builtin_prefetch(addr)
#endif

/*
 * Where this backend last found a bucket of each hash slot: the bucket, its
 * ring and the ring's newest entry, as addresses.  Only ever prefetched, so
 * a stale one (the bucket gone, the ring grown, a hash shared) costs a
 * wasted prefetch and nothing else: the lookup under the lock decides.  An
 * acquire's reads form a chain, directory head -> bucket -> ring -> newest
 * entry, each a likely cache miss (the other backends wrote them last);
 * started before the partition lock is taken, they arrive together while it
 * is.
 */
#define NHINTS 1024

typedef struct Hint
{
	uint32		hash;
	const void *bucket;
	const void *log;
	const void *newest;
} Hint;

static Hint hints[NHINTS];

static inline void
prefetch_bucket(const Key *k, int p)
{
	const Hint *h = &hints[k->hash % NHINTS];

	PREFETCH(&pyrate_heads[pyrate_head_of(k->hash)]);
	PREFETCH(partition(p));
	if (h->hash != k->hash || h->bucket == NULL)
		return;
	PREFETCH(h->bucket);
	if (h->log == NULL)
		return;
	PREFETCH(h->log);
	/* the newest entry then, and the 64-byte line after it for what came since */
	PREFETCH(h->newest);
	PREFETCH((const char *) h->newest + 64);
}

/* s's bucket (NULL: none), after the change: its lock is still held */
static inline void
remember_bucket(dsa_area *a, const Key *k, const Slot *s)
{
	Hint	   *h = &hints[k->hash % NHINTS];
	const pyr_log *log = NULL;

	if (s->b != NULL && DsaPointerIsValid(s->b->log))
		log = dsa_get_address(a, s->b->log);
	h->hash = k->hash;
	h->bucket = s->b;
	h->log = log != NULL && log->len > 0 ? log : NULL;
	if (h->log)
		h->newest = &log->e[(log->head + log->len - 1) & (log->cap - 1)];
}

/* Find the bucket; the partition lock is held.  false when absent. */
static bool
find(dsa_area *a, const Key *k, Slot *s)
{
	dsa_pointer *link;

	s->head = pyrate_head_of(k->hash);
	link = &pyrate_heads[s->head];
	while (DsaPointerIsValid(*link))
	{
		MemBucket  *b = dsa_get_address(a, *link);

		if (b->hash == k->hash && b->dbid == k->dbid && b->namelen == k->namelen &&
			memcmp(b->name, k->name, k->namelen) == 0)
		{
			s->link = link;
			s->dp = *link;
			s->b = b;
			return true;
		}
		link = &b->next;
	}
	s->link = link;				/* the chain's end: where a new bucket goes */
	s->dp = InvalidDsaPointer;
	s->b = NULL;
	return false;
}

/*
 * The bucket's items as a log: its ring, or else a log in one (owned by the
 * caller) holding the bucket's one item if it has one.  A change made to the
 * latter is kept only by store_one.
 */
static inline pyr_log *
log_of(dsa_area *a, const MemBucket *b, OneLog *one)
{
	pyr_log    *log = (pyr_log *) one->bytes;

	if (b != NULL && DsaPointerIsValid(b->log))
		return dsa_get_address(a, b->log);
	pyr_log_init(log, 1);
	if (b != NULL && b->one_weight > 0)
		(void) pyr_log_push(log, b->one_ts, b->one_weight);
	return log;
}

static inline bool
is_one(const pyr_log *log, const OneLog *one)
{
	return (const char *) log == one->bytes;
}

/* Keep a log of at most one item in the bucket's entry. */
static void
store_one(MemBucket *b, const pyr_log *log)
{
	int64		ts;
	int64		w;

	if (pyr_log_peek(log, 0, &ts, &w))
	{
		b->one_ts = ts;
		b->one_weight = (int32) w;
	}
	else
		b->one_weight = 0;
}

static dsa_pointer
alloc_block(dsa_area *a, Size size)
{
	return dsa_allocate_extended(a, size, DSA_ALLOC_NO_OOM | DSA_ALLOC_HUGE);
}

/* A new log of capacity cap holding the items of old (NULL: none). */
static dsa_pointer
new_log(dsa_area *a, const pyr_log *old, uint32 cap)
{
	dsa_pointer dp = alloc_block(a, pyr_log_size(cap));
	pyr_log    *log;

	if (!DsaPointerIsValid(dp))
		return dp;
	log = dsa_get_address(a, dp);
	pyr_log_init(log, cap);
	if (old != NULL)
		pyr_log_move(log, old);
	return dp;
}

/* Remove every item of the bucket. */
static void
free_log(dsa_area *a, MemBucket *b, PyratePartition *part)
{
	pyr_log    *log;

	if (b->one_weight > 0)
		part->items--;
	b->one_weight = 0;
	if (!DsaPointerIsValid(b->log))
		return;
	log = dsa_get_address(a, b->log);
	part->items -= log->len;
	account(part, b->dbid, -(int64) pyr_log_size(log->cap));
	dsa_free(a, b->log);
	b->log = InvalidDsaPointer;
}

/*
 * max_buckets: the group a definition's buckets count in (see
 * PYRATE_GROUPS).  Two definitions may share a group: each then counts the
 * other's buckets as well, and is held back early, never late.
 */
static uint16
group_of(Oid dbid, const char *pattern)
{
	uint32		h = hash_combine(hash_bytes_uint32(dbid),
								 hash_bytes((const unsigned char *) pattern, strlen(pattern)));

	return (uint16) (1 + h % (PYRATE_GROUPS - 1));
}

/* Count a new bucket in its group; false when that would pass max (0: no cap). */
static bool
group_add(uint16 group, int64 max)
{
	pg_atomic_uint32 *n = &pyrate_shared->group_buckets[group];
	uint32		old;

	if (group == 0)
		return true;
	old = pg_atomic_read_u32(n);
	do
	{
		if (max > 0 && old >= max)
			return false;
		if (old == PG_UINT32_MAX)
			return max == 0;
	} while (!pg_atomic_compare_exchange_u32(n, &old, old + 1));
	return true;
}

static void
unlink_bucket(dsa_area *a, Slot *s, PyratePartition *part)
{
	uint16		group = s->b->group & PYRATE_GROUP_MASK;

	if (group != 0)
		(void) pg_atomic_fetch_sub_u32(&pyrate_shared->group_buckets[group], 1);
	free_log(a, s->b, part);
	*s->link = s->b->next;
	if (!DsaPointerIsValid(pyrate_heads[s->head]))
		mark_head(s->head, false);
	part->buckets--;
	account(part, s->b->dbid, -(int64) BUCKET_SIZE(s->b->namelen));
	dsa_free(a, s->dp);
}

/* Make the block at bdp an empty bucket for k, at the end of its chain. */
static void
link_bucket(dsa_area *a, const Key *k, Slot *s, dsa_pointer bdp, PyratePartition *part)
{
	MemBucket  *b = dsa_get_address(a, bdp);

	b->next = InvalidDsaPointer;
	b->log = InvalidDsaPointer;
	b->one_ts = 0;
	b->one_weight = 0;
	b->dbid = k->dbid;
	b->hash = k->hash;
	b->namelen = (uint16) k->namelen;
	b->group = 0;
	memcpy(b->name, k->name, k->namelen);
	b->name[k->namelen] = '\0';
	if (s->link == &pyrate_heads[s->head])
		mark_head(s->head, true);
	*s->link = bdp;
	s->dp = bdp;
	s->b = b;
	part->buckets++;
	account(part, k->dbid, BUCKET_SIZE(k->namelen));
}

/*
 * Make room for one more item in the bucket at s, whose items are log (its
 * ring, or a one-item log of log_of): a new ring of twice the room, holding
 * them.  The bucket exists.  The partition lock is held exclusively.  On
 * failure nothing has changed and *needed says how many bytes were wanted.
 */
static bool
make_room(dsa_area *a, Slot *s, const pyr_log *log, bool one, PyratePartition *part,
		  Size *needed)
{
	uint32		cap = one ? 2 : log->cap * 2;
	dsa_pointer ldp;

	if (!one && log->cap >= MAX_CAP)
	{
		*needed = pyr_log_size(MAX_CAP);
		return false;
	}
	*needed = pyr_log_size(cap);
	ldp = new_log(a, log, cap);
	if (!DsaPointerIsValid(ldp))
		return false;
	if (!one)
	{
		account(part, s->b->dbid, -(int64) pyr_log_size(log->cap));
		dsa_free(a, s->b->log);
	}
	s->b->log = ldp;
	s->b->one_weight = 0;
	account(part, s->b->dbid, pyr_log_size(cap));
	return true;
}

/* Create the bucket at s (absent); false when memory is short. */
static bool
create_bucket(dsa_area *a, const Key *k, Slot *s, PyratePartition *part, Size *needed)
{
	dsa_pointer bdp = alloc_block(a, BUCKET_SIZE(k->namelen));

	*needed = BUCKET_SIZE(k->namelen);
	if (!DsaPointerIsValid(bdp))
		return false;
	link_bucket(a, k, s, bdp, part);
	return true;
}

/*
 * Unlink partition p's buckets (its lock held exclusively): those that have
 * leaked empty (only_empty), else every bucket of a database (InvalidOid:
 * of every database).  Returns how many went.
 */
static int64
unlink_in_partition(dsa_area *a, int p, bool only_empty, Oid dbid)
{
	int64		n = 0;
	uint32		h;

	foreach_occupied(p, h)
	{
		Slot		s;

		s.head = h;
		s.link = &pyrate_heads[h];
		while (DsaPointerIsValid(*s.link))
		{
			bool		doomed;

			s.dp = *s.link;
			s.b = dsa_get_address(a, s.dp);
			if (only_empty)
				doomed = !DsaPointerIsValid(s.b->log) && s.b->one_weight == 0;
			else
				doomed = !OidIsValid(dbid) || s.b->dbid == dbid;
			if (!doomed)
			{
				s.link = &s.b->next;
				continue;
			}
			unlink_bucket(a, &s, partition(p));
			n++;
		}
	}
	return n;
}

/*
 * unlink_in_partition under each partition lock in turn, logging each
 * partition's clearing when logged.  Returns how many went.
 */
static int64
unlink_buckets(dsa_area *a, bool only_empty, Oid dbid, bool logged)
{
	int64		n = 0;
	int			p;

	for (p = 0; p < PYRATE_PARTITIONS; p++)
	{
		LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
		n += unlink_in_partition(a, p, only_empty, dbid);
		if (logged)
			mark_logged(p, pyrate_wal_clear(dbid, p));
		LWLockRelease(partition_lock(p));
	}
	return n;
}

/* Evict the buckets that have leaked empty; returns how many. */
static int64
evict_empty(dsa_area *a)
{
	int64		n = unlink_buckets(a, true, InvalidOid, false);

	pg_atomic_fetch_add_u64(&pyrate_shared->evicted, n);
	return n;
}

/*
 * Remove every bucket of a database (InvalidOid: of every database), at the
 * commit of its DROP DATABASE or DROP EXTENSION pyrate; a standby replays it.
 */
static void
clear_database(dsa_area *a, Oid dbid)
{
	(void) unlink_buckets(a, false, dbid, !RecoveryInProgress());
}

typedef struct MemoryTotals
{
	int64		buckets;
	int64		items;
	int64		bytes;
} MemoryTotals;

static void
memory_totals(MemoryTotals *t)
{
	int			p;

	memset(t, 0, sizeof(*t));
	for (p = 0; p < PYRATE_PARTITIONS; p++)
	{
		LWLockAcquire(partition_lock(p), LW_SHARED);
		t->buckets += partition(p)->buckets;
		t->items += partition(p)->items;
		t->bytes += partition(p)->bytes;
		LWLockRelease(partition_lock(p));
	}
}

/* What an acquire found short of memory. */
typedef enum Shortage
{
	SHORT_NONE,
	SHORT_ARENA,				/* the arena (the allocator failed) */
	SHORT_RESERVE,				/* a new bucket, and the reserve is out */
	SHORT_SHARE,				/* the database's share */
	SHORT_CAP					/* a new bucket, and the definition's max_buckets */
} Shortage;

/* pyrate.memory_database_share: percent of the arena one database may use */
static int	memory_database_share = 100;

/* Whether dbid's buckets may take size more bytes. */
static bool
within_share(Oid dbid, Size size)
{
	if (memory_database_share >= 100)
		return true;
	return pg_atomic_read_u64(db_bytes(dbid)) + size <=
		pyrate_shared->arena_size / 100 * (Size) memory_database_share;
}

static Size
reserve_held_kb(void)
{
	int			held;

	SpinLockAcquire(&pyrate_shared->reserve_lock);
	held = pyrate_shared->reserve_held;
	SpinLockRelease(&pyrate_shared->reserve_lock);
	return held * PYRATE_RESERVE_CHUNK / 1024;
}

static void
report_full(const PyrateBucket *pb, Size needed, Shortage why)
{
	const char *name = pb->name;
	MemoryTotals t;

	if (why == SHORT_CAP)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("definition \"%s\" has all the memory buckets its max_buckets allows (%lld)",
						pb->def.pattern, (long long) pb->def.max_buckets),
				 errdetail("Bucket \"%s\" would be a new one.", name),
				 errhint("Dispose of its buckets no longer needed, let leaks reclaim idle ones, "
						 "or raise max_buckets with pyrate_define().")));
	pg_atomic_fetch_add_u64(&pyrate_shared->full_errors, 1);
	memory_totals(&t);
	if (why == SHORT_SHARE)
	{
		char	   *db = get_database_name(MyDatabaseId);

		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("database \"%s\" has used its share of pyrate's shared memory", db ? db : "?"),
				 errdetail("Bucket \"%s\" needs %zu more bytes; the database's buckets hold %llu kB, "
						   "and pyrate.memory_database_share allows it %d%% of %zu kB.",
						   name, needed,
						   (unsigned long long) (pg_atomic_read_u64(db_bytes(MyDatabaseId)) / 1024),
						   memory_database_share, pyrate_shared->arena_size / 1024),
				 errhint("Leak or dispose of this database's memory buckets, or have a superuser raise "
						 "pyrate.memory_database_share for it (ALTER DATABASE ... SET).")));
	}
	if (why == SHORT_RESERVE)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pyrate's shared memory is full for new buckets"),
				 errdetail("Bucket \"%s\" is new, and the reserve kept for buckets that exist "
						   "(pyrate.memory_reserve) is in use; %lld buckets hold %lld items in %lld kB of %zu kB.",
						   name, (long long) t.buckets, (long long) t.items, (long long) (t.bytes / 1024),
						   pyrate_shared->arena_size / 1024),
				 errhint("New buckets are admitted again once leaks or disposals free enough memory; "
						 "leak more often (pyrate.leak_interval), or raise pyrate.memory_size and restart the server.")));
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("pyrate's shared memory is full"),
			 errdetail("Bucket \"%s\" needs %zu more bytes; pyrate.memory_size is %zu kB, "
					   "and %lld buckets hold %lld items in %lld kB of it, besides what the allocator keeps for itself "
					   "and %zu kB kept in reserve for buckets that exist.",
					   name, needed, pyrate_shared->arena_size / 1024,
					   (long long) t.buckets, (long long) t.items, (long long) (t.bytes / 1024),
					   reserve_held_kb()),
			 errhint("Leak buckets more often (pyrate.leak_interval), dispose of buckets no longer needed, "
					 "or raise pyrate.memory_size and restart the server.")));
}

/*
 * A durable bucket changes on the primary only; a standby holds the copy its
 * WAL replays.  (Volatile buckets are each server's own.)
 */
static void
refuse_in_recovery(const PyrateBucket *pb, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot %s durable memory bucket \"%s\" during recovery", what, pb->name),
			 errdetail("Durable memory buckets are WAL-logged: a standby holds the primary's, as it replays them."),
			 errhint("Do it on the primary, or define pattern \"%s\" with durable => false so that each server "
					 "limits with buckets of its own.", pb->def.pattern)));
}

/* Whether a bucket's changes are WAL-logged. */
static inline bool
is_durable(const MemBucket *b)
{
	return (b->group & PYRATE_GROUP_DURABLE) != 0;
}

/*
 * slots => n: after a put of weight into the ring, merge its old entries
 * once every so many units (pyr_slots_due), at the newest item's time.
 */
static void
compact(int slots, const pyr_rate *rates, int nrates, pyr_log *log, int64 weight,
		PyratePartition *part)
{
	pyr_slots	s;
	int64		after;
	int64		newest_ts;
	int64		newest_weight;

	if (slots == 0)
		return;
	pyr_slots_init(&s, rates, nrates, slots);
	after = log->base + pyr_log_count(log);
	if (pyr_slots_due(&s, after - weight, after) &&
		pyr_log_peek(log, 0, &newest_ts, &newest_weight))
		part->items -= pyr_log_compact(log, &s, newest_ts);
}

/*
 * The bucket at s is full (its items are log, a one-item log of log_of when
 * one): give it a ring of twice the room, push the item into it and compact
 * it.  The partition lock is held exclusively.  false, nothing changed and
 * *needed set, when memory is short.
 */
static bool
grow_and_push(dsa_area *a, Slot *s, const pyr_log *log, bool one, int p, int64 ts,
			  int64 weight, int slots, const pyr_rate *rates, int nrates, Size *needed)
{
	pyr_log    *grown;

	if (!make_room(a, s, log, one, partition(p), needed))
		return false;
	grown = dsa_get_address(a, s->b->log);
	(void) pyr_log_push(grown, ts, weight);
	partition(p)->items++;
	compact(slots, rates, nrates, grown, weight, partition(p));
	return true;
}

static void
memory_acquire(const PyrateBucket *pb, int64 ts, int64 weight, bool store, pyr_decision *d)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	int			p;
	bool		evicted = false;

	key_init(&k, MyDatabaseId, pb->name);
	p = partition_of(k.hash);
	if (!store || weight == 0)
	{
		Slot		s;
		OneLog		one;
		pyr_view	v;

		prefetch_bucket(&k, p);
		LWLockAcquire(partition_lock(p), LW_SHARED);
		(void) find(a, &k, &s);
		v = pyr_log_view(log_of(a, s.b, &one));
		pyr_decide(&v, pb->def.rates, pb->def.nrates, ts, weight, d);
		remember_bucket(a, &k, &s);
		LWLockRelease(partition_lock(p));
		return;
	}
	if (pb->def.durable && RecoveryInProgress())
		refuse_in_recovery(pb, "acquire on");
	for (;;)
	{
		Slot		s;
		OneLog		one;
		pyr_log    *log;
		Size		needed = 0;
		Shortage	why = SHORT_NONE;
		bool		growing = false;
		bool		stored = false;

		prefetch_bucket(&k, p);
		LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
		(void) find(a, &k, &s);
		log = log_of(a, s.b, &one);
		switch (pyr_log_put(log, pb->def.rates, pb->def.nrates, ts, weight, pb->exact, d))
		{
			case PYR_PUT_REJECTED:
				break;
			case PYR_PUT_ADMITTED:
				/* weight > 0: stored in the ring, or as the bucket's one item */
				if (!is_one(log, &one))
					compact(pb->def.slots, pb->def.rates, pb->def.nrates, log, weight, partition(p));
				else
				{
					if (s.b == NULL)
					{
						/* (a hash of the pattern: only for a bucket that is new) */
						uint16		group = group_of(k.dbid, pb->def.pattern);

						needed = BUCKET_SIZE(k.namelen);
						/* new buckets leave the reserve to those that exist */
						if (!within_share(k.dbid, needed))
							why = SHORT_SHARE;
						else if (!pyrate_reserve_whole(a))
							why = SHORT_RESERVE;
						else if (!group_add(group, pb->def.max_buckets))
							why = SHORT_CAP;
						else if (!create_bucket(a, &k, &s, partition(p), &needed))
						{
							(void) pg_atomic_fetch_sub_u32(&pyrate_shared->group_buckets[group], 1);
							why = SHORT_ARENA;
						}
						if (why != SHORT_NONE)
							break;
						s.b->group = group;
					}
					store_one(s.b, log);
				}
				partition(p)->items++;
				stored = true;
				break;
			case PYR_PUT_FULL:
				growing = true;
				/* the ring make_room would make: twice the room */
				needed = pyr_log_size(is_one(log, &one) ? 2 : log->cap * 2);
				if (!within_share(k.dbid, needed))
					why = SHORT_SHARE;
				else if (grow_and_push(a, &s, log, is_one(log, &one), p, ts, weight,
									   pb->def.slots, pb->def.rates, pb->def.nrates, &needed))
					stored = true;
				else
					why = SHORT_ARENA;
				break;
		}
		if (stored && pb->def.durable)
		{
			/* logged as it was pushed: replay pushes it the same way */
			s.b->group |= PYRATE_GROUP_DURABLE;
			mark_logged(p, pyrate_wal_put(k.dbid, k.name, k.namelen,
										  s.b->group & PYRATE_GROUP_MASK, ts, weight,
										  pb->def.slots, pb->def.rates, pb->def.nrates));
		}
		remember_bucket(a, &k, &s);
		LWLockRelease(partition_lock(p));
		if (why == SHORT_NONE)
			return;
		/* (a cap is the definition's: evicting others' buckets cannot help it) */
		if (!evicted && why != SHORT_CAP)
		{
			/* buckets that have leaked empty go first */
			(void) evict_empty(a);
			evicted = true;
			continue;
		}
		/* a bucket that exists grows into the reserve */
		if (why == SHORT_ARENA && growing && pyrate_reserve_release(a))
			continue;
		report_full(pb, needed, why);
	}
}

/*
 * The bucket's log, looked up with its partition lock taken in shared mode
 * (the caller releases partition_lock(*p)); an empty log when none.
 */
static const pyr_log *
read_log(const PyrateBucket *pb, int *p, OneLog *one)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	Slot		s;

	key_init(&k, MyDatabaseId, pb->name);
	*p = partition_of(k.hash);
	LWLockAcquire(partition_lock(*p), LW_SHARED);
	(void) find(a, &k, &s);
	return log_of(a, s.b, one);
}

/* units (count) or entries stored, read under the partition lock */
static int64
log_size(const PyrateBucket *pb, bool entries)
{
	int			p;
	OneLog		one;
	const pyr_log *log = read_log(pb, &p, &one);
	int64		n = entries ? (int64) pyr_log_entries(log) : pyr_log_count(log);

	LWLockRelease(partition_lock(p));
	return n;
}

static int64
memory_count(const PyrateBucket *pb)
{
	return log_size(pb, false);
}

static int64
memory_entries(const PyrateBucket *pb)
{
	return log_size(pb, true);
}

static bool
memory_peek(const PyrateBucket *pb, int64 index, int64 *ts, int64 *weight)
{
	int			p;
	OneLog		one;
	bool		found = pyr_log_peek(read_log(pb, &p, &one), index, ts, weight);

	LWLockRelease(partition_lock(p));
	return found;
}

/*
 * Remove the bucket's items older than before; the partition lock is held
 * exclusively.  A ring halves once a quarter is used, and goes back to the
 * bucket's entry when one item is left.  Redo does the same, so a standby's
 * copy holds its memory as the primary's does.  Returns the units removed.
 */
static int64
leak_bucket(dsa_area *a, Slot *s, int p, int64 before, PyrateLeakEnd *end)
{
	OneLog		one;
	pyr_log    *log = log_of(a, s->b, &one);
	uint32		len = log->len;
	int64		removed = pyr_log_leak(log, before);

	if (log->len == 0)
		*end = PYRATE_LEAK_EMPTIED;
	partition(p)->items -= len - log->len;
	if (is_one(log, &one))
		store_one(s->b, log);
	else if (log->len <= 1)
	{
		/* back to the bucket's entry: the ring goes */
		store_one(s->b, log);
		account(partition(p), s->b->dbid, -(int64) pyr_log_size(log->cap));
		dsa_free(a, s->b->log);
		s->b->log = InvalidDsaPointer;
	}
	else if (log->cap > 2 && log->len <= log->cap / 4)
	{
		/* shrink by half; when that allocation fails, keep the ring */
		dsa_pointer ldp = new_log(a, log, log->cap / 2);

		if (DsaPointerIsValid(ldp))
		{
			account(partition(p), s->b->dbid,
					(int64) pyr_log_size(log->cap / 2) - (int64) pyr_log_size(log->cap));
			dsa_free(a, s->b->log);
			s->b->log = ldp;
		}
	}
	return removed;
}

/* Whether the bucket is gone by reclaim(before): nothing at or after before. */
static bool
reclaimable(dsa_area *a, const MemBucket *b, int64 before)
{
	OneLog		one;
	int64		ts;
	int64		w;

	return !pyr_log_peek(log_of(a, b, &one), 0, &ts, &w) || ts < before;
}

/*
 * A leak is one O(log n) step on the ring however many items go, so
 * max_items (the table engine's batch bound) does not apply here.  During
 * recovery a durable bucket is left to the WAL that replays the primary's
 * leaks.
 */
static int64
memory_leak(const PyrateBucket *pb, const PyrateLeakHow *how, PyrateLeakEnd *end)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	Slot		s;
	int64		removed = 0;
	int			p;

	*end = PYRATE_LEAK_HOLDS;
	key_init(&k, MyDatabaseId, pb->name);
	p = partition_of(k.hash);
	LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
	if (find(a, &k, &s) && !(is_durable(s.b) && RecoveryInProgress()))
	{
		removed = leak_bucket(a, &s, p, how->before, end);
		if (removed > 0 && is_durable(s.b))
			mark_logged(p, pyrate_wal_change(XLOG_PYRATE_LEAK, k.dbid, k.name, k.namelen,
											 how->before));
	}
	LWLockRelease(partition_lock(p));
	return removed;
}

/*
 * Find the bucket under its partition lock (exclusive) for a user's change;
 * a durable one cannot change during recovery.  false when absent.
 */
static bool
find_to_change(const PyrateBucket *pb, Key *k, Slot *s, int *p, const char *what)
{
	key_init(k, MyDatabaseId, pb->name);
	*p = partition_of(k->hash);
	LWLockAcquire(partition_lock(*p), LW_EXCLUSIVE);
	if (!find(pyrate_area(), k, s))
		return false;
	if (is_durable(s->b) && RecoveryInProgress())
	{
		LWLockRelease(partition_lock(*p));
		refuse_in_recovery(pb, what);
	}
	return true;
}

static void
memory_flush(const PyrateBucket *pb)
{
	Key			k;
	Slot		s;
	int			p;

	if (find_to_change(pb, &k, &s, &p, "flush"))
	{
		free_log(pyrate_area(), s.b, partition(p));
		if (is_durable(s.b))
			mark_logged(p, pyrate_wal_change(XLOG_PYRATE_FLUSH, k.dbid, k.name, k.namelen, 0));
	}
	LWLockRelease(partition_lock(p));
}

static bool
memory_dispose(const PyrateBucket *pb)
{
	Key			k;
	Slot		s;
	bool		found;
	int			p;

	found = find_to_change(pb, &k, &s, &p, "dispose of");
	if (found)
	{
		bool		durable = is_durable(s.b);

		unlink_bucket(pyrate_area(), &s, partition(p));
		if (durable)
			mark_logged(p, pyrate_wal_change(XLOG_PYRATE_DISPOSE, k.dbid, k.name, k.namelen, 0));
	}
	LWLockRelease(partition_lock(p));
	return found;
}

static bool
memory_reclaim(const PyrateBucket *pb, int64 before)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	Slot		s;
	bool		gone = false;
	int			p;

	key_init(&k, MyDatabaseId, pb->name);
	p = partition_of(k.hash);
	LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
	if (find(a, &k, &s) && !(is_durable(s.b) && RecoveryInProgress()) &&
		reclaimable(a, s.b, before))
	{
		bool		durable = is_durable(s.b);

		unlink_bucket(a, &s, partition(p));
		if (durable)
			mark_logged(p, pyrate_wal_change(XLOG_PYRATE_RECLAIM, k.dbid, k.name, k.namelen,
											 before));
		gone = true;
	}
	LWLockRelease(partition_lock(p));
	return gone;
}

/* ---- redo (memory_wal.c): replaying the WAL of durable buckets ---- */

/* redo puts that found no memory; reported now and then */
static int64 redo_dropped = 0;
static int	redo_evict_skip = 0;

/*
 * Take partition p's lock for a record ending at lsn; false (lock released)
 * when the partition holds that record's change already.  redo_unlock
 * records that it holds it now.
 */
static bool
redo_lock(int p, XLogRecPtr lsn)
{
	LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
	if (partition(p)->lsn >= lsn)
	{
		LWLockRelease(partition_lock(p));
		return false;
	}
	return true;
}

static void
redo_unlock(int p, XLogRecPtr lsn)
{
	partition(p)->lsn = lsn;
	LWLockRelease(partition_lock(p));
}

static void
redo_put(Oid dbid, const char *name, uint16 group, int64 ts, int64 weight,
					   int slots, const pyr_rate *rates, int nrates, XLogRecPtr lsn)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	int			p;
	bool		evicted = false;

	if (group >= PYRATE_GROUPS)
		group = 0;
	key_init(&k, dbid, name);
	p = partition_of(k.hash);
	for (;;)
	{
		Slot		s;
		OneLog		one;
		pyr_log    *log;
		Size		needed;
		bool		stored = false;

		if (!redo_lock(p, lsn))
			return;
		if (!find(a, &k, &s) && create_bucket(a, &k, &s, partition(p), &needed))
		{
			/* counted, but never refused: the primary admitted it */
			s.b->group = group;
			if (group != 0)
				(void) pg_atomic_fetch_add_u32(&pyrate_shared->group_buckets[group], 1);
		}
		if (s.b != NULL)
		{
			log = log_of(a, s.b, &one);
			if (pyr_log_push(log, ts, weight))
			{
				if (is_one(log, &one))
					store_one(s.b, log);
				else
					compact(slots, rates, nrates, log, weight, partition(p));
				partition(p)->items++;
				stored = true;
			}
			else
				stored = grow_and_push(a, &s, log, is_one(log, &one), p, ts, weight,
									   slots, rates, nrates, &needed) ||
					(evicted && pyrate_reserve_release(a) &&
					 grow_and_push(a, &s, log, is_one(log, &one), p, ts, weight,
								   slots, rates, nrates, &needed));
			if (stored)
				s.b->group |= PYRATE_GROUP_DURABLE;
		}
		if (stored || evicted)
		{
			redo_unlock(p, lsn);
			if (!stored && (redo_dropped++ % 10000) == 0)
				ereport(WARNING,
						(errmsg("pyrate: replaying the WAL, an item of memory bucket \"%s\" found no room and was dropped",
								name),
						 errdetail("%lld replayed item(s) dropped so far; pyrate.memory_size is %zu kB.",
								   (long long) redo_dropped, pyrate_shared->arena_size / 1024),
						 errhint("Give this server a pyrate.memory_size at least the primary's.")));
			return;
		}
		LWLockRelease(partition_lock(p));
		/* (when an eviction found nothing, the next thousand puts skip it) */
		if (redo_evict_skip > 0)
			redo_evict_skip--;
		else if (evict_empty(a) == 0)
			redo_evict_skip = 1000;
		evicted = true;
	}
}

static void
redo_change(uint8 kind, Oid dbid, const char *name, int64 before, XLogRecPtr lsn)
{
	dsa_area   *a = pyrate_area();
	Key			k;
	Slot		s;
	int			p;

	key_init(&k, dbid, name);
	p = partition_of(k.hash);
	if (!redo_lock(p, lsn))
		return;
	if (find(a, &k, &s))
	{
		PyrateLeakEnd end;

		switch (kind)
		{
			case XLOG_PYRATE_LEAK:
				(void) leak_bucket(a, &s, p, before, &end);
				break;
			case XLOG_PYRATE_FLUSH:
				free_log(a, s.b, partition(p));
				break;
			case XLOG_PYRATE_DISPOSE:
				unlink_bucket(a, &s, partition(p));
				break;
			case XLOG_PYRATE_RECLAIM:
				if (reclaimable(a, s.b, before))
					unlink_bucket(a, &s, partition(p));
				break;
		}
	}
	redo_unlock(p, lsn);
}

static void
redo_clear(Oid dbid, int p, XLogRecPtr lsn)
{
	if (!redo_lock(p, lsn))
		return;
	(void) unlink_in_partition(pyrate_area(), p, false, dbid);
	redo_unlock(p, lsn);
}

/*
 * One partition's buckets of this database, copied into buf as (count, the
 * oldest item's time or PG_INT64_MAX, then the name and its NUL) records.
 * Nothing is allocated under the lock: when buf is too small the lock is
 * released, buf grown, and the partition read again.  Returns the records'
 * length.
 */
static Size
copy_partition(dsa_area *a, int p, char **buf, Size *bufsize)
{
	for (;;)
	{
		Size		need = 0;
		uint32		h;

		LWLockAcquire(partition_lock(p), LW_SHARED);
		foreach_occupied(p, h)
		{
			dsa_pointer dp;

			for (dp = pyrate_heads[h]; DsaPointerIsValid(dp);)
			{
				MemBucket  *b = dsa_get_address(a, dp);

				if (b->dbid == MyDatabaseId)
				{
					OneLog		one;
					const pyr_log *log = log_of(a, b, &one);
					int64		count = pyr_log_count(log);
					int64_t		oldest;

					if (!pyr_log_oldest(log, &oldest))
						oldest = PG_INT64_MAX;
					if (need + 2 * sizeof(int64) + b->namelen + 1 <= *bufsize)
					{
						memcpy(*buf + need, &count, sizeof(int64));
						memcpy(*buf + need + sizeof(int64), &oldest, sizeof(int64));
						memcpy(*buf + need + 2 * sizeof(int64), b->name, b->namelen + 1);
					}
					need += 2 * sizeof(int64) + b->namelen + 1;
				}
				dp = b->next;
			}
		}
		LWLockRelease(partition_lock(p));
		if (need <= *bufsize)
			return need;
		*bufsize = Max(need * 2, *bufsize * 2);
		*buf = *buf ? repalloc_huge(*buf, *bufsize) : MemoryContextAllocHuge(CurrentMemoryContext, *bufsize);
	}
}

static void
memory_each_bucket(Oid nsp, PyrateBucketCallback cb, void *arg)
{
	dsa_area   *a = pyrate_area();
	Size		bufsize = 8192;
	char	   *buf = palloc(bufsize);
	int			p;

	for (p = 0; p < PYRATE_PARTITIONS; p++)
	{
		Size		len;
		Size		off;

		CHECK_FOR_INTERRUPTS();
		len = copy_partition(a, p, &buf, &bufsize);
		/* the callbacks route names through the catalogs: no lock held here */
		for (off = 0; off < len;)
		{
			int64		count;
			PyrateListed listed;
			const char *name = buf + off + 2 * sizeof(int64);

			memset(&listed, 0, sizeof(listed));
			memcpy(&count, buf + off, sizeof(int64));
			memcpy(&listed.oldest_ts, buf + off + sizeof(int64), sizeof(int64));
			off += 2 * sizeof(int64) + strlen(name) + 1;
			cb(name, count, &listed, arg);
		}
	}
	pfree(buf);
}

/* A memory bucket's leak is one O(log n) step: every bucket is worth a look. */
static void
memory_each_due(Oid nsp, int64 at, PyrateBucketCallback cb, void *arg)
{
	memory_each_bucket(nsp, cb, arg);
}

const PyrateEngine pyrate_memory_engine = {
	"memory",
	false,
	memory_acquire,
	memory_count,
	memory_entries,
	memory_peek,
	memory_leak,
	memory_flush,
	memory_dispose,
	memory_reclaim,
	memory_each_bucket,
	memory_each_due,
	NULL						/* every pass reads every bucket */
};

static const PyrateWalReplay replay = {redo_put, redo_change, redo_clear};

/* ---- saving and restoring (memory_file.c) ----------------------------- */

/*
 * Every bucket (only the durable ones when durable_only), partition by
 * partition, with the partition's lsn.  arg is the DSA area, or NULL in a
 * running server: each partition is then read under its lock, in shared
 * mode.  Without it only the postmaster may call this, when no other process
 * is left.
 */
static void
foreach_bucket(PyrateFileVisitor visit, void *visit_arg, bool durable_only, uint64 *lsn,
			   void *arg)
{
	dsa_area   *a = arg ? arg : pyrate_area();
	int			p;

	for (p = 0; p < PYRATE_PARTITIONS; p++)
	{
		uint32		h;

		if (arg == NULL)
			LWLockAcquire(partition_lock(p), LW_SHARED);
		lsn[p] = partition(p)->lsn;
		foreach_occupied(p, h)
		{
			dsa_pointer dp;

			for (dp = pyrate_heads[h]; DsaPointerIsValid(dp);)
			{
				MemBucket  *b = dsa_get_address(a, dp);
				OneLog		one;

				if (!durable_only || is_durable(b))
					visit(b->dbid, b->name, b->namelen, b->group, log_of(a, b, &one), visit_arg);
				dp = b->next;
			}
		}
		if (arg == NULL)
			LWLockRelease(partition_lock(p));
	}
}

XLogRecPtr
pyrate_memory_saved_redo(void)
{
	return pyrate_shared->saved_redo;
}

XLogRecPtr
pyrate_memory_replay_from(void)
{
	return pyrate_shared->replay_from;
}

bool
pyrate_memory_restored_whole(void)
{
	return pyrate_shared->pre_replayed || !RecoveryInProgress();
}

bool
pyrate_memory_save(XLogRecPtr redo, XLogRecPtr from)
{
	return pyrate_memory_file_save_durable(foreach_bucket, NULL, redo, from);
}

/*
 * Insert a restored bucket holding n items given as (ts, weight) pairs,
 * oldest first.  false when memory is short or the bucket exists already;
 * nothing is kept of it then.
 */
static bool
insert_restored(Oid dbid, const char *name, uint32 group, const int64 *pairs, uint32 n,
				void *arg)
{
	dsa_area   *a = arg;
	Key			k;
	Slot		s;
	int			p;
	uint32		cap = 1;
	uint32		i;
	dsa_pointer bdp = InvalidDsaPointer;
	dsa_pointer ldp = InvalidDsaPointer;
	bool		ok = false;

	key_init(&k, dbid, name);
	p = partition_of(k.hash);
	while (cap < n)
		cap <<= 1;
	LWLockAcquire(partition_lock(p), LW_EXCLUSIVE);
	if (!find(a, &k, &s))
	{
		bdp = alloc_block(a, BUCKET_SIZE(k.namelen));
		if (DsaPointerIsValid(bdp) && n > 1)
			ldp = new_log(a, NULL, cap);
		ok = DsaPointerIsValid(bdp) && (n <= 1 || DsaPointerIsValid(ldp));
	}
	if (ok)
	{
		link_bucket(a, &k, &s, bdp, partition(p));
		/* counted again as it was: a cap holds across a restart */
		s.b->group = (uint16) group;
		if ((group & PYRATE_GROUP_MASK) != 0)
			(void) pg_atomic_fetch_add_u32(&pyrate_shared->group_buckets[group & PYRATE_GROUP_MASK], 1);
		if (n == 1)
		{
			s.b->one_ts = pairs[0];
			s.b->one_weight = (int32) pairs[1];
		}
		else if (n > 1)
		{
			pyr_log    *log = dsa_get_address(a, ldp);

			for (i = 0; i < n; i++)
				(void) pyr_log_push(log, pairs[2 * i], pairs[2 * i + 1]);
			s.b->log = ldp;
			account(partition(p), dbid, pyr_log_size(cap));
		}
		partition(p)->items += n;
	}
	else if (DsaPointerIsValid(bdp))
		dsa_free(a, bdp);
	LWLockRelease(partition_lock(p));
	return ok;
}

/* ---- DROP EXTENSION pyrate / DROP DATABASE empty their buckets -------- */

void
pyrate_memory_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId)
{
	if (access != OAT_DROP || subId != 0)
		return;
	if (classId == ExtensionRelationId)
	{
		char	   *name = get_extension_name(objectId);

		if (name == NULL || strcmp(name, "pyrate") != 0)
			return;
		clear_at_commit = MyDatabaseId;
	}
	else if (classId == DatabaseRelationId)
		clear_at_commit = objectId;
	else
		return;
	clear_subid = GetCurrentSubTransactionId();
}

static void
memory_xact_callback(XactEvent event, void *arg)
{
	if (!OidIsValid(clear_at_commit))
		return;
	if (event == XACT_EVENT_COMMIT)
		clear_database(pyrate_area(), clear_at_commit);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		clear_at_commit = InvalidOid;
}

static void
memory_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (!OidIsValid(clear_at_commit) || mySubid != clear_subid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		clear_at_commit = InvalidOid;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		clear_subid = parentSubid;
}

/* ---- shared memory --------------------------------------------------- */

void
pyrate_memory_shmem_request(void)
{
	pyrate_arena_request();
}

static void
save_at_exit(int code, Datum arg)
{
	/* after a crash (code != 0) the last durable save stays for recovery */
	if (code == 0)
		pyrate_memory_file_save(foreach_bucket, DatumGetPointer(arg));
}

void
pyrate_memory_shmem_startup(void)
{
	dsa_area   *created;
	uint64		lsn[PYRATE_PARTITIONS];
	uint64		redo;
	uint64		from;
	PyrateRestored restored;
	int			p;

	created = pyrate_arena_startup();
	if (created == NULL)
		return;

	/*
	 * The postmaster made the arena, at its start or after a server process
	 * crashed: fill it from the last clean shutdown, or else from the last
	 * durable save, on which recovery replays the WAL (from "from" on).  A
	 * clean shutdown's file is replaced at once by the durable buckets alone:
	 * from now on a crash must not bring back its volatile ones (if that
	 * fails, the file stays: its durable buckets and their lsns are right for
	 * recovery, and its volatile ones only count against their limits).  A
	 * durable save stays as it is, good with the WAL from "from" on until the
	 * next checkpoint, when the saver saves anew; a file that was not
	 * restored must go.
	 */
	restored = pyrate_memory_file_restore(insert_restored, created, lsn, &redo, &from);
	for (p = 0; p < PYRATE_PARTITIONS; p++)
		partition(p)->lsn = lsn[p];
	pyrate_shared->replay_from = from;
	pyrate_shared->pre_replayed = false;
	/* (the saver saves next when the redo pointer passes saved_redo) */
	pyrate_shared->saved_redo = redo;
	if (restored != PYRATE_RESTORED_DURABLE &&
		!pyrate_memory_file_save_durable(foreach_bucket, created, redo, from))
	{
		pyrate_shared->saved_redo = InvalidXLogRecPtr;	/* at once */
		if (restored == PYRATE_RESTORED_NOTHING)
			pyrate_memory_file_forget();
	}
	on_shmem_exit(save_at_exit, PointerGetDatum(created));
}

void
pyrate_memory_init(void)
{
	/* a PGC_POSTMASTER setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pyrate.memory_size",
								"Shared memory for the memory storage engine's buckets.",
								"Buckets and their items live in this much shared memory; when it is full, "
								"buckets that have leaked empty are evicted, then acquires fail.",
								&pyrate_memory_size,
								32 * 1024, 1024, MAX_KILOBYTES,
								PGC_POSTMASTER,
								GUC_UNIT_KB,
								NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		pyrate_wal_init(&replay);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pyrate.memory_reserve",
								"Shared memory of the memory engine kept for buckets that exist.",
								"Set aside at startup (at most a quarter of pyrate.memory_size, in 64 kB chunks); "
								"only a bucket that exists may grow into it, and while any of it is in use new "
								"buckets are refused.",
								&pyrate_memory_reserve,
								1024, 0, MAX_KILOBYTES,
								PGC_POSTMASTER,
								GUC_UNIT_KB,
								NULL, NULL, NULL);
	DefineCustomIntVariable("pyrate.memory_database_share",
							"Percent of the memory engine's shared memory one database's buckets may use.",
							"Set per database by a superuser (ALTER DATABASE ... SET), so that no database "
							"crowds out the others; 100 puts no limit.",
							&memory_database_share,
							100, 1, 100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	RegisterXactCallback(memory_xact_callback, NULL);
	RegisterSubXactCallback(memory_subxact_callback, NULL);
}

/* ---- pyrate_memory_status() ----------------------------------------- */

PG_FUNCTION_INFO_V1(pyrate_memory_status);

Datum
pyrate_memory_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false};
	MemoryTotals t;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pyrate_memory_status must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = BoolGetDatum(pyrate_memory_available());
	if (!pyrate_memory_available())
	{
		memset(nulls + 1, true, sizeof(nulls) - sizeof(bool));
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}
	memory_totals(&t);
	values[1] = Int64GetDatum((int64) pyrate_shared->arena_size);
	values[2] = Int64GetDatum(t.bytes);
	values[3] = Int64GetDatum(t.buckets);
	values[4] = Int64GetDatum(t.items);
	values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&pyrate_shared->evicted));
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&pyrate_shared->full_errors));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
