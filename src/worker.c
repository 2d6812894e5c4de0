/*
 * worker.c — the background worker that leaks every bucket ("pyrate leaker").
 *
 * Registered when pyrate is preloaded; started once the server accepts
 * connections, on a hot standby too, connected to pyrate.database.  On a
 * standby it leaks memory buckets only (table buckets change on the primary
 * and arrive by replication); after a promotion, table buckets as well.  Every
 * pyrate.leak_interval ms (0: never) it removes, from every bucket of both
 * engines whose name still routes to a definition, the items older than the
 * definition's largest interval.  Table buckets go many to a transaction,
 * which ends after about LEAK_BATCH units or LEAK_BUCKETS buckets, so a big
 * leak never holds locks or a snapshot for long; its commits do not wait for
 * a WAL flush (a leak lost in a crash is done again by the next pass).
 * Memory buckets all go in one pass outside any transaction.
 *
 * Its settings (pyrate.leak_interval, pyrate.database) and its status in
 * shared memory (WorkerShared: its spinlock guards every field) are its own.
 *
 * It waits for CREATE EXTENSION pyrate in its database and notices DROP and
 * re-CREATE (it looks the extension up at every leak).  SIGHUP rereads the
 * configuration; a new pyrate.database makes it exit so the postmaster
 * restarts it there.  SIGTERM ends it.  A failed leak is logged and retried
 * at the next interval.  What it did is in pyrate_worker_status() and, at
 * DEBUG1, in the server log.
 */
#include "worker.h"

#include <limits.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "utils/fmgroids.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/autovacuum.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "engine.h"
#include "engine_memory.h"
#include "memory_wal.h"

/* table units removed per transaction (one bucket's leak may pass it) */
#define LEAK_BATCH 1000
/* table buckets leaked in one transaction at most */
#define LEAK_BUCKETS 500
/* seconds before the postmaster restarts a worker that exited with an error */
#define RESTART_SECONDS 5

/* What the worker last did; guarded by mutex. */
typedef struct WorkerStatus
{
	int			pid;			/* 0 when not running */
	char		database[NAMEDATALEN];
	char		state[64];
	int			interval_ms;
	TimestampTz started;
	TimestampTz last_leak;		/* start of the last completed leak; 0 never */
	double		last_leak_ms;	/* how long it took */
	int64		last_memory_units;
	int64		last_table_units;
	int64		total_units;
	int64		runs;
	TimestampTz last_error_at;
	char		last_error[256];
} WorkerStatus;

typedef struct WorkerShared
{
	slock_t		mutex;
	WorkerStatus status;
	Latch	   *latch;			/* the running worker's, NULL when none */
	bool		created;		/* CREATE EXTENSION pyrate committed: look now */
} WorkerShared;

int			pyrate_leak_interval = 10000;
char	   *pyrate_database = NULL;
bool		pyrate_leak_vacuum = true;

/*
 * Units the worker's leaks removed from table buckets since it last
 * vacuumed pyrate's items table.
 */
static int64 units_since_vacuum = 0;

/* it vacuums once its leaks removed VACUUM_MIN + VACUUM_SCALE x the items */
#define VACUUM_MIN 10000
#define VACUUM_SCALE 0.2

static WorkerShared *worker_shared = NULL;	/* NULL unless preloaded */
static bool created_here = false;	/* this transaction created the extension */

PGDLLEXPORT void pyrate_worker_main(Datum arg);

PG_FUNCTION_INFO_V1(pyrate_worker_status);

typedef struct LeakTarget
{
	int			engine;
	char	   *name;
	int64		before;
	bool		idle;			/* held no unit: reclaim it if still idle */
	PyrateListed listed;		/* where the listing found it */
} LeakTarget;

/* table buckets reclaimed per transaction (each keeps its lock to commit) */
#define RECLAIM_BATCH 100

typedef struct Collect
{
	Oid			nsp;
	int			engine;
	int64		at;
	MemoryContext cxt;			/* outlives the listing's transaction */
	List	   *targets;
} Collect;

void
pyrate_worker_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

void
pyrate_worker_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_shared = ShmemInitStruct("pyrate worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(worker_shared, 0, sizeof(WorkerShared));
		SpinLockInit(&worker_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * CREATE EXTENSION wakes the worker once the creating transaction commits,
 * so a worker waiting for pyrate starts leaking it at once instead of at its
 * next interval.
 */
void
pyrate_worker_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId)
{
	/*
	 * The new extension's row is not visible yet, so its name cannot be
	 * read here: any CREATE EXTENSION wakes the worker, which only looks.
	 */
	if (access == OAT_POST_CREATE && classId == ExtensionRelationId && subId == 0)
		created_here = worker_shared != NULL;
}

static void
worker_xact_callback(XactEvent event, void *arg)
{
	if (!created_here)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		SpinLockAcquire(&worker_shared->mutex);
		worker_shared->created = true;
		if (worker_shared->latch)
			SetLatch(worker_shared->latch);
		SpinLockRelease(&worker_shared->mutex);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		created_here = false;
}

void
pyrate_worker_init(void)
{
	BackgroundWorker w;

	DefineCustomIntVariable("pyrate.leak_interval",
							"How often the background worker leaks every bucket; 0 turns its leaking off.",
							NULL,
							&pyrate_leak_interval,
							10000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("pyrate.leak_vacuum",
							 "Whether the background worker vacuums pyrate's items table after its leaks removed a fifth of it.",
							 "Autovacuum looks at each database once a minute (autovacuum_naptime); under churn the worker's leaks delete faster than that, and the table would grow.",
							 &pyrate_leak_vacuum,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("pyrate.database",
							   "Database the background worker connects to.",
							   "On a change the worker restarts to connect there.",
							   &pyrate_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	RegisterXactCallback(worker_xact_callback, NULL);

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* on a hot standby too: it leaks the standby's memory buckets */
	w.bgw_start_time = BgWorkerStart_ConsistentState;
	w.bgw_restart_time = RESTART_SECONDS;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "pyrate");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "pyrate_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "pyrate leaker");
	snprintf(w.bgw_type, BGW_MAXLEN, "pyrate leaker");
	RegisterBackgroundWorker(&w);

	/* from the start, through recovery: it saves what recovery rebuilds */
	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS;
	w.bgw_start_time = BgWorkerStart_PostmasterStart;
	w.bgw_restart_time = 1;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "pyrate");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "pyrate_saver_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "pyrate saver");
	snprintf(w.bgw_type, BGW_MAXLEN, "pyrate saver");
	RegisterBackgroundWorker(&w);
}

/* ---- the saver -------------------------------------------------------- */

/*
 * "pyrate saver": saves the durable memory buckets (engine_memory.c) each
 * time the redo pointer moves, that is when a checkpoint or restartpoint
 * starts, and keeps the WAL that recovery needs on top of the last save: a
 * physical replication slot, "pyrate_memory", holds it from the position
 * read before that save.  Recovery replays from the last completed
 * checkpoint's redo pointer; a checkpoint that completes before the saver
 * could save (an immediate one with next to nothing to write) leaves the
 * records between the save's position and its redo pointer to that WAL
 * (memory_wal.c reads them first).  Without a slot (wal_level minimal,
 * max_replication_slots 0) such a crash may lose them, and recovery says so.
 * A save that fails is tried again a second later, the file before it
 * staying in place.  It also asks the WAL writer to flush the buckets'
 * records, which their transactions do not (memory_wal.c).  No database
 * connection, no transaction.
 */
#define SAVE_POLL_MS 20
/* after a save failed (and said why in the log) */
#define SAVE_RETRY_MS 1000
/* buckets that changed are saved this often at most (see the loop) */
#define SAVE_EVERY_MS 1000
#define SAVER_SLOT "pyrate_memory"
/* after the slot could not be made or moved (the error is in the log) */
#define SLOT_RETRY_MS 60000

PGDLLEXPORT void pyrate_saver_main(Datum arg);

/* Keep the WAL from "from" on, in the saver's slot (where one can be made). */
static void
keep_wal(XLogRecPtr from)
{
	static bool said = false;

	if (max_replication_slots == 0 || wal_level < WAL_LEVEL_REPLICA)
	{
		if (!said)
			ereport(LOG,
					(errmsg("pyrate: no replication slot keeps the WAL that durable memory buckets may need after a crash"),
					 errdetail("A crash right after a checkpoint that completes before pyrate saves its buckets may lose their changes logged in between."),
					 errhint("Set wal_level to replica or above and max_replication_slots above 0.")));
		said = true;
		return;
	}
	if (SearchNamedReplicationSlot(SAVER_SLOT, true) == NULL)
		ReplicationSlotCreate(SAVER_SLOT, false, RS_PERSISTENT, false);
	else
		ReplicationSlotAcquire(SAVER_SLOT, true);
	SpinLockAcquire(&MyReplicationSlot->mutex);
	MyReplicationSlot->data.restart_lsn = from;
	SpinLockRelease(&MyReplicationSlot->mutex);
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
	ReplicationSlotsComputeRequiredLSN();
	ReplicationSlotRelease();
}

/*
 * keep_wal, its errors logged rather than ending the saver (which also asks
 * for the WAL flushes): all replication slots taken, say.  false after one.
 */
static bool
keep_wal_or_log(XLogRecPtr from)
{
	bool		ok = true;

	PG_TRY();
	{
		keep_wal(from);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		LWLockReleaseAll();
		if (MyReplicationSlot != NULL)
			ReplicationSlotRelease();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

void
pyrate_saver_main(Datum arg)
{
	XLogRecPtr	saved;
	XLogRecPtr	keep_from = InvalidXLogRecPtr;	/* for the slot, once a primary */
	XLogRecPtr	saved_newest = InvalidXLogRecPtr;
	TimestampTz retry_at = 0;
	TimestampTz next_save = 0;
	TimestampTz keep_retry_at = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	if (!pyrate_memory_available())
		proc_exit(0);
	saved = pyrate_memory_saved_redo();
	/* the startup's save: its WAL is kept from where recovery replays */
	if (!XLogRecPtrIsInvalid(saved))
		keep_from = pyrate_memory_replay_from();
	for (;;)
	{
		XLogRecPtr	redo;
		XLogRecPtr	from;
		XLogRecPtr	newest;
		TimestampTz start;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SAVE_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ShutdownRequestPending)
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* the WAL writer flushes the memory buckets' records by its next round */
		newest = pyrate_wal_nudge();

		/*
		 * The slot moves on a primary only: during recovery the startup
		 * process restores the slots from disk, and none may be made before.
		 * (So on a standby nothing keeps that WAL: a restartpoint that
		 * completes within SAVE_POLL_MS of starting, as one a CHECKPOINT on
		 * the standby asks for may, can leave a gap; the start says so.)
		 */
		if (!XLogRecPtrIsInvalid(keep_from) && !RecoveryInProgress() &&
			GetCurrentTimestamp() >= keep_retry_at)
		{
			if (!keep_wal_or_log(keep_from))
				keep_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SLOT_RETRY_MS);
			keep_from = InvalidXLogRecPtr;
		}
		/*
		 * Save when the redo pointer moved (0 until recovery has read its
		 * checkpoint; never going back), and besides when the buckets changed
		 * since the last save, every SAVE_EVERY_MS or twenty times as long
		 * as the last save took: the WAL to keep, and what a base backup
		 * taken meanwhile misses, stay that short.  Never during recovery
		 * before it replayed what the restored buckets lack (memory_wal.c):
		 * a save then would claim changes it does not hold.
		 */
		redo = GetRedoRecPtr();
		start = GetCurrentTimestamp();
		if (start < retry_at || !pyrate_memory_restored_whole() ||
			!(redo > saved || (newest > saved_newest && start >= next_save)))
			continue;
		/* every change logged (or replayed) before from is in what is saved */
		from = RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : GetXLogInsertRecPtr();
		if (pyrate_memory_save(Max(redo, saved), from))
		{
			long		took = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());

			saved = Max(redo, saved);
			saved_newest = newest;
			next_save = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													Max(SAVE_EVERY_MS, 20 * took));
			keep_from = from;
			ereport(DEBUG1,
					(errmsg("pyrate: saved the durable memory buckets for redo pointer %X/%X, from %X/%X",
							LSN_FORMAT_ARGS(redo), LSN_FORMAT_ARGS(from))));
		}
		else
			retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SAVE_RETRY_MS);
	}
}

/* ---- status --------------------------------------------------------- */

static void
set_state(const char *state)
{
	SpinLockAcquire(&worker_shared->mutex);
	strlcpy(worker_shared->status.state, state, sizeof(worker_shared->status.state));
	SpinLockRelease(&worker_shared->mutex);
	pgstat_report_activity(STATE_IDLE, state);
}

static void
clear_pid(int code, Datum arg)
{
	SpinLockAcquire(&worker_shared->mutex);
	worker_shared->status.pid = 0;
	worker_shared->latch = NULL;
	strlcpy(worker_shared->status.state, "stopped", sizeof(worker_shared->status.state));
	SpinLockRelease(&worker_shared->mutex);
}

/* ---- leaking -------------------------------------------------------- */

static void
collect(const char *name, int64 count, const PyrateListed *listed, void *arg)
{
	Collect    *c = arg;
	const PyrateDefinition *d;
	LeakTarget *t;
	MemoryContext old;

	d = pyrate_route_or_null(c->nsp, name);
	if (d == NULL)
		return;
	/* holding units, none old enough to leak */
	if (count != 0 && !pyrate_listed_may_leak(listed, c->at - d->rates[d->nrates - 1].interval))
		return;
	old = MemoryContextSwitchTo(c->cxt);
	t = palloc(sizeof(LeakTarget));
	t->engine = c->engine;
	t->name = pstrdup(name);
	t->before = c->at - d->rates[d->nrates - 1].interval;
	t->idle = count == 0;
	t->listed = *listed;
	c->targets = lappend(c->targets, t);
	MemoryContextSwitchTo(old);
}

static void
begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* The extension's schema, InvalidOid when it is not installed. */
static Oid
extension_schema(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("pyrate"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/* What one pass did. */
typedef struct LeakPass
{
	int64		memory_units;
	int64		table_units;
	int			buckets;		/* buckets that held units */
	int64		reclaimed;		/* idle empty buckets forgotten */
	int			xacts;			/* transactions its table leaks took */
	Oid			nsp;			/* the extension's schema */
} LeakPass;

/* Whether the extension is still the one listed (not dropped, re-created). */
static bool
same_extension(Oid nsp)
{
	return extension_schema() == nsp;
}

/* From lc on, the first target that is a table bucket to leak (not idle). */
static ListCell *
next_table_leak(const PyrateEngine **engines, List *targets, ListCell *lc)
{
	for (; lc != NULL; lc = lnext(targets, lc))
	{
		LeakTarget *t = lfirst(lc);

		if (engines[t->engine]->in_tables && !t->idle)
			break;
	}
	return lc;
}

/*
 * One leak of every bucket at time at, then the reclaiming of buckets that
 * held nothing at the listing and are still idle; false when the extension
 * is not there (then nothing was done).
 */
static bool
leak_all(int64 at, LeakPass *pass)
{
	const PyrateEngine *engines[PYRATE_MAX_ENGINES];
	int			nengines;
	Collect		c;
	ListCell   *lc;
	int			batch = 0;

	memset(pass, 0, sizeof(*pass));
	c.cxt = CurrentMemoryContext;

	begin();
	c.nsp = pass->nsp = extension_schema();
	if (!OidIsValid(c.nsp))
	{
		end();
		return false;
	}
	/* on a standby, memory buckets only; after promotion, table ones too */
	nengines = pyrate_engines_writable(engines);
	c.at = at;
	c.targets = NIL;
	for (c.engine = 0; c.engine < nengines; c.engine++)
		engines[c.engine]->each_due(c.nsp, at, collect, &c);
	end();

	/*
	 * memory buckets: each leak or reclaim is one O(log n) step under a
	 * partition lock, all in one go, outside any transaction (they touch no
	 * table)
	 */
	foreach(lc, c.targets)
	{
		LeakTarget *t = lfirst(lc);
		PyrateBucket b;

		if (engines[t->engine]->in_tables)
			continue;
		memset(&b, 0, sizeof(b));
		b.nsp = c.nsp;
		b.name = t->name;
		if (t->idle)
			pass->reclaimed += engines[t->engine]->reclaim(&b, t->before);
		else
		{
			PyrateLeakHow how = {0};
			PyrateLeakEnd end;

			how.before = t->before;
			pass->buckets++;
			pass->memory_units += engines[t->engine]->leak(&b, &how, &end);
		}
	}

	/*
	 * table buckets: many to a transaction, which ends once it removed
	 * LEAK_BATCH units, leaked LEAK_BUCKETS buckets or reclaimed
	 * RECLAIM_BATCH; a bucket holding more than LEAK_BATCH expired items is
	 * leaked in several.  A transaction per bucket cost a commit (and a WAL
	 * flush, where commits wait for one) per bucket.  A leak that empties a
	 * bucket reclaims it too, where it can at once; the others go below.
	 */
	lc = next_table_leak(engines, c.targets, list_head(c.targets));
	while (lc != NULL)
	{
		int64		units = 0;
		int			nbuckets = 0;
		int			nreclaimed = 0;

		CHECK_FOR_INTERRUPTS();
		begin();
		/* dropped (or dropped and re-created) since the listing: stop */
		if (!same_extension(c.nsp))
		{
			end();
			return true;
		}
		while (lc != NULL && units < LEAK_BATCH && nbuckets < LEAK_BUCKETS &&
			   nreclaimed < RECLAIM_BATCH)
		{
			LeakTarget *t = lfirst(lc);
			PyrateBucket b;
			PyrateLeakHow how;
			int64		removed;
			PyrateLeakEnd end;

			CHECK_FOR_INTERRUPTS();
			memset(&b, 0, sizeof(b));
			b.nsp = c.nsp;
			b.name = t->name;
			b.listed = t->listed;
			how.before = t->before;
			how.max_items = LEAK_BATCH;
			how.reclaim = true;
			/* a due time that comes before the next pass is left as it is */
			how.next_leak = at + Max(pyrate_leak_interval, 0);
			removed = engines[t->engine]->leak(&b, &how, &end);
			units += removed;
			nbuckets++;

			/*
			 * Fewer units than LEAK_BATCH: fewer items too (each removed one
			 * holds a unit at least), so the leak reached its end.  Otherwise
			 * the same bucket again.  One it emptied and could not reclaim is
			 * reclaimed below.
			 */
			if (removed < LEAK_BATCH || end != PYRATE_LEAK_HOLDS)
			{
				if (removed > 0)
					pass->buckets++;
				if (end == PYRATE_LEAK_RECLAIMED)
				{
					pass->reclaimed++;
					nreclaimed++;
				}
				else if (end == PYRATE_LEAK_EMPTIED)
					t->idle = true;
				lc = next_table_leak(engines, c.targets, lnext(c.targets, lc));
			}
		}
		end();
		pass->xacts++;
		/* let autovacuum see the deletes while the pass goes on */
		pgstat_report_stat(false);
		pass->table_units += units;
	}

	/* idle table buckets: reclaimed RECLAIM_BATCH to a transaction */
	foreach(lc, c.targets)
	{
		LeakTarget *t = lfirst(lc);
		PyrateBucket b;

		if (!engines[t->engine]->in_tables || !t->idle)
			continue;
		if (batch == 0)
		{
			CHECK_FOR_INTERRUPTS();
			begin();
			if (!same_extension(c.nsp))
			{
				end();
				return true;
			}
		}
		memset(&b, 0, sizeof(b));
		b.nsp = c.nsp;
		b.name = t->name;
		b.listed = t->listed;
		pass->reclaimed += engines[t->engine]->reclaim(&b, t->before);
		if (++batch == RECLAIM_BATCH)
		{
			end();
			pgstat_report_stat(false);
			batch = 0;
		}
	}
	if (batch > 0)
		end();
	return true;
}

/*
 * After a pass: vacuum pyrate's items table once the worker's leaks removed
 * VACUUM_MIN units plus VACUUM_SCALE of the items it holds since the last
 * time.  Autovacuum visits a database once per autovacuum_naptime (a
 * minute); a busy limiter's leaks delete faster than that, and until a
 * vacuum frees their space (and records it in the free space map) new items
 * go to new pages.  Units stand for items here (an item holds one unit at
 * least), so it may vacuum a little early, never late.
 */
static void
maybe_vacuum(const LeakPass *pass, MemoryContext cxt)
{
	Relation	rel;
	Oid			relid;
	double		items;
	VacuumParams params;
	MemoryContext old_portal = PortalContext;
	TimestampTz start;

	units_since_vacuum += pass->table_units;
	if (!pyrate_leak_vacuum || units_since_vacuum < VACUUM_MIN || RecoveryInProgress())
		return;
	begin();
	relid = same_extension(pass->nsp) ? get_relname_relid("pyrate_item_data", pass->nsp) : InvalidOid;
	rel = OidIsValid(relid) ? try_relation_open(relid, AccessShareLock) : NULL;
	if (rel == NULL)
	{
		end();
		return;
	}
	items = Max(rel->rd_rel->reltuples, 0);
	relation_close(rel, AccessShareLock);
	if (units_since_vacuum < VACUUM_MIN + VACUUM_SCALE * items)
	{
		end();
		return;
	}

	set_state("vacuuming pyrate_item_data");
	pgstat_report_activity(STATE_RUNNING, "VACUUM pyrate_item_data");
	start = GetCurrentTimestamp();
	memset(&params, 0, sizeof(params));
	params.options = VACOPT_VACUUM | VACOPT_SKIP_LOCKED;
	params.freeze_min_age = -1;
	params.freeze_table_age = -1;
	params.multixact_freeze_min_age = -1;
	params.multixact_freeze_table_age = -1;
	params.log_min_duration = -1;
	params.index_cleanup = VACOPTVALUE_UNSPECIFIED;
	params.truncate = VACOPTVALUE_UNSPECIFIED;
	params.nworkers = -1;
	/* vacuum() keeps its memory under PortalContext, as in a statement */
	PortalContext = cxt;
	/* paced as autovacuum paces itself, not at a manual VACUUM's full speed */
	if (autovacuum_vac_cost_delay >= 0)
		VacuumCostDelay = autovacuum_vac_cost_delay;
	if (autovacuum_vac_cost_limit > 0)
		VacuumCostLimit = autovacuum_vac_cost_limit;

	/*
	 * vacuum() commits the transaction it is called in, runs its own, and
	 * starts one more for the caller to commit (with no snapshot set).
	 */
	vacuum(list_make1(makeVacuumRelation(NULL, relid, NIL)), &params, NULL, true);
	CommitTransactionCommand();
	PortalContext = old_portal;
	units_since_vacuum = 0;
	ereport(DEBUG1,
			(errmsg_internal("pyrate leaker: vacuumed pyrate_item_data (%.0f items before) in %.3f ms",
							 items, (double) (GetCurrentTimestamp() - start) / 1000.0)));
}

/* Leak once; returns when it started (0 when nothing was leaked). */
static TimestampTz
run_leak(MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TimestampTz start = GetCurrentTimestamp();
	LeakPass	pass;
	volatile bool installed = false;
	volatile double leak_ms = 0;

	pgstat_report_activity(STATE_RUNNING, "leaking every bucket");
	PG_TRY();
	{
		installed = leak_all(pyrate_now_ms(), &pass);
		leak_ms = (double) (GetCurrentTimestamp() - start) / 1000.0;
		if (installed)
			maybe_vacuum(&pass, cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		PortalContext = NULL;	/* maybe_vacuum's, reset below */
		/* an error outside a transaction (a memory leak) releases its lock here */
		LWLockReleaseAll();
		ereport(WARNING,
				(errmsg("pyrate leaker: leaking failed: %s", edata->message),
				 errdetail("It tries again in pyrate.leak_interval (%d ms).", pyrate_leak_interval)));
		SpinLockAcquire(&worker_shared->mutex);
		worker_shared->status.last_error_at = GetCurrentTimestamp();
		strlcpy(worker_shared->status.last_error, edata->message,
				sizeof(worker_shared->status.last_error));
		SpinLockRelease(&worker_shared->mutex);
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
		set_state("idle after a failed leak");
		return 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
	pgstat_report_stat(true);

	if (!installed)
	{
		ereport(DEBUG1,
				(errmsg_internal("pyrate leaker: extension pyrate is not installed in this database; nothing to leak")));
		set_state("waiting for CREATE EXTENSION pyrate");
		return 0;
	}
	SpinLockAcquire(&worker_shared->mutex);
	worker_shared->status.last_leak = start;
	worker_shared->status.last_leak_ms = leak_ms;
	worker_shared->status.last_memory_units = pass.memory_units;
	worker_shared->status.last_table_units = pass.table_units;
	worker_shared->status.total_units += pass.memory_units + pass.table_units;
	worker_shared->status.runs++;
	SpinLockRelease(&worker_shared->mutex);
	ereport(DEBUG1,
			(errmsg_internal("pyrate leaker: leaked %lld unit(s) from memory buckets and %lld from table buckets (%d bucket(s) with items; %d transaction(s) for the table buckets), reclaimed %lld idle empty bucket(s), in %.3f ms",
							 (long long) pass.memory_units, (long long) pass.table_units, pass.buckets,
							 pass.xacts, (long long) pass.reclaimed, leak_ms)));
	set_state(RecoveryInProgress() ? "idle (a standby: memory buckets only)" : "idle");
	return start;
}

void
pyrate_worker_main(Datum arg)
{
	char	   *database;
	MemoryContext cxt;
	TimestampTz next;
	TimestampTz last_leak = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	database = MemoryContextStrdup(TopMemoryContext, pyrate_database);
	BackgroundWorkerInitializeConnection(database, NULL, 0);

	/*
	 * Its transactions only remove what has expired and forget idle buckets:
	 * one lost in a crash is done again by the next pass, so none waits for
	 * its commit to reach the disk (or a synchronous standby).
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("pyrate leaker");

	SpinLockAcquire(&worker_shared->mutex);
	memset(&worker_shared->status, 0, sizeof(worker_shared->status));
	worker_shared->status.pid = MyProcPid;
	strlcpy(worker_shared->status.database, database, NAMEDATALEN);
	worker_shared->status.started = GetCurrentTimestamp();
	worker_shared->status.interval_ms = pyrate_leak_interval;
	worker_shared->latch = MyLatch;
	SpinLockRelease(&worker_shared->mutex);
	before_shmem_exit(clear_pid, (Datum) 0);
	ereport(LOG,
			(errmsg("pyrate leaker started in database \"%s\", leaking every %d ms",
					database, pyrate_leak_interval)));

	cxt = AllocSetContextCreate(TopMemoryContext, "pyrate leaker", ALLOCSET_DEFAULT_SIZES);
	next = GetCurrentTimestamp();
	set_state("idle");
	for (;;)
	{
		TimestampTz now;
		long		timeout = -1;
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, pyrate_database) != 0)
			{
				ereport(LOG,
						(errmsg("pyrate leaker: pyrate.database changed from \"%s\" to \"%s\"; restarting to connect there",
								database, pyrate_database)));
				proc_exit(1);
			}
			SpinLockAcquire(&worker_shared->mutex);
			worker_shared->status.interval_ms = pyrate_leak_interval;
			SpinLockRelease(&worker_shared->mutex);
			/* the new interval counts from the last leak */
			if (last_leak != 0)
				next = TimestampTzPlusMilliseconds(last_leak, pyrate_leak_interval);
			ereport(DEBUG1,
					(errmsg_internal("pyrate leaker: configuration reloaded, leak_interval = %d ms",
									 pyrate_leak_interval)));
		}
		now = GetCurrentTimestamp();
		SpinLockAcquire(&worker_shared->mutex);
		if (worker_shared->created)
		{
			/* the extension was just created: start leaking it now */
			worker_shared->created = false;
			next = now;
		}
		SpinLockRelease(&worker_shared->mutex);
		if (pyrate_leak_interval > 0 && now >= next)
		{
			TimestampTz leaked = run_leak(cxt);

			if (leaked != 0)
				last_leak = leaked;
			now = GetCurrentTimestamp();
			next = TimestampTzPlusMilliseconds(now, pyrate_leak_interval);
		}
		if (pyrate_leak_interval > 0)
		{
			timeout = (long) ((next - now + 999) / 1000);
			events |= WL_TIMEOUT;
		}
		else
			set_state("idle: leaking is off (pyrate.leak_interval = 0)");
		(void) WaitLatch(MyLatch, events, Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---- pyrate_worker_status() ---------------------------------------- */

#define STATUS_COLS 13

Datum
pyrate_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[STATUS_COLS];
	bool		nulls[STATUS_COLS];
	WorkerStatus st;
	bool		running;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pyrate_worker_status must return a composite type");
	desc = BlessTupleDesc(desc);
	memset(nulls, true, sizeof(nulls));
	if (worker_shared == NULL)
	{
		values[2] = CStringGetTextDatum("not running: pyrate is not in shared_preload_libraries");
		nulls[2] = false;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}
	SpinLockAcquire(&worker_shared->mutex);
	st = worker_shared->status;
	SpinLockRelease(&worker_shared->mutex);
	/* a worker that crashed never cleared its pid */
	running = st.pid != 0 && BackendPidGetProc(st.pid) != NULL;

	if (running)
	{
		values[0] = Int32GetDatum(st.pid);
		nulls[0] = false;
	}
	if (st.database[0])
	{
		values[1] = CStringGetTextDatum(st.database);
		nulls[1] = false;
	}
	values[2] = CStringGetTextDatum(running ? st.state : (st.started ? "stopped" : "not started"));
	nulls[2] = false;
	if (running)
	{
		values[3] = Int32GetDatum(st.interval_ms);
		nulls[3] = false;
	}
	if (st.started)
	{
		values[4] = TimestampTzGetDatum(st.started);
		nulls[4] = false;
	}
	if (st.last_leak)
	{
		values[5] = TimestampTzGetDatum(st.last_leak);
		values[6] = Float8GetDatum(st.last_leak_ms);
		values[7] = Int64GetDatum(st.last_memory_units);
		values[8] = Int64GetDatum(st.last_table_units);
		nulls[5] = nulls[6] = nulls[7] = nulls[8] = false;
	}
	values[9] = Int64GetDatum(st.total_units);
	values[10] = Int64GetDatum(st.runs);
	nulls[9] = nulls[10] = false;
	if (st.last_error_at)
	{
		values[11] = TimestampTzGetDatum(st.last_error_at);
		values[12] = CStringGetTextDatum(st.last_error);
		nulls[11] = nulls[12] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
