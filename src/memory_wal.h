/*
 * memory_wal.h — the memory engine's WAL: a custom resource manager whose
 * records replay a durable memory bucket's changes at crash recovery and on
 * standbys (PostgreSQL 15's custom WAL resource managers).
 *
 * A change is logged under the bucket's partition lock, right after it is
 * made, and the record's end becomes the partition's lsn: the saved state
 * of a partition holds exactly the changes whose records end at or before
 * its lsn, and redo applies a record only past it.  Records are inserted
 * without waiting for a flush, as no part of the caller's transaction: the
 * saver asks the WAL writer to flush them (pyrate_wal_nudge), as
 * synchronous_commit = off leaves commits to it.
 */
#ifndef PYRATE_MEMORY_WAL_H
#define PYRATE_MEMORY_WAL_H

#include "base.h"

#include "access/xlogdefs.h"

/*
 * The resource manager's id: the one PostgreSQL sets aside for extensions
 * that have not been assigned their own.  Another preloaded library using it
 * makes the server refuse to start, saying which.
 */
#define PYRATE_RMGR_ID 128

/* Record kinds (the high four bits of the record's info). */
#define XLOG_PYRATE_PUT		0x00	/* an item stored */
#define XLOG_PYRATE_LEAK	0x10	/* items older than a time removed */
#define XLOG_PYRATE_FLUSH	0x20	/* every item removed */
#define XLOG_PYRATE_DISPOSE 0x30	/* the bucket removed */
#define XLOG_PYRATE_RECLAIM 0x40	/* the bucket removed if nothing newer than a time */
#define XLOG_PYRATE_CLEAR	0x50	/* a database's buckets in one partition removed */

/*
 * What replays the records: the memory engine's redo (engine_memory.c).
 * Each applies a record ending at lsn unless the bucket's partition holds
 * it already.
 */
typedef struct PyrateWalReplay
{
	void		(*put) (Oid dbid, const char *name, uint16 group, int64 ts, int64 weight,
						int slots, const pyr_rate *rates, int nrates, XLogRecPtr lsn);
	/* leak, flush, dispose, reclaim; before: leak's and reclaim's time */
	void		(*change) (uint8 kind, Oid dbid, const char *name, int64 before,
						   XLogRecPtr lsn);
	void		(*clear) (Oid dbid, int partition, XLogRecPtr lsn);
} PyrateWalReplay;

/* Register the resource manager (while preloading), replaying with replay. */
void		pyrate_wal_init(const PyrateWalReplay *replay);

/*
 * Log a change of the bucket (dbid, name); returns the record's end.  put
 * carries the item and, for a bucket with slots, what its compaction needs;
 * the others carry a time (leak, reclaim: before) or nothing.
 */
XLogRecPtr	pyrate_wal_put(Oid dbid, const char *name, uint32 namelen, uint16 group,
						   int64 ts, int64 weight, int slots, const pyr_rate *rates,
						   int nrates);
XLogRecPtr	pyrate_wal_change(uint8 kind, Oid dbid, const char *name, uint32 namelen,
							  int64 before);
XLogRecPtr	pyrate_wal_clear(Oid dbid, int partition);

/*
 * Ask the WAL writer to flush, by its next wal_writer_delay, every record
 * this server logged, if any was since the last call (the saver, every
 * SAVE_POLL_MS): the records are no part of their transactions, whose
 * commits would otherwise ask for it.  Returns the newest change the
 * buckets hold (logged, replayed or restored), to tell whether they changed.
 */
XLogRecPtr	pyrate_wal_nudge(void);

#endif							/* PYRATE_MEMORY_WAL_H */
