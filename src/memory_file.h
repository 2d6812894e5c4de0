/*
 * memory_file.h — the memory engine's state file: its buckets saved at a
 * clean shutdown and restored at the next start (postmaster only).
 *
 * The file knows buckets only as (database, name, log); the engine hands
 * them over through the callbacks below.
 */
#ifndef PYRATE_MEMORY_FILE_H
#define PYRATE_MEMORY_FILE_H

#include "base.h"

/* One bucket, as the engine shows it to the writer. */
typedef void (*PyrateFileVisitor) (Oid dbid, const char *name, uint32 namelen,
								   uint32 group, const pyr_log *log, void *arg);
/*
 * The engine's walk, partition by partition, over every bucket (only the
 * durable ones when durable_only), calling visit(..., visit_arg), and
 * storing each partition's lsn in lsn[p]: its buckets and its lsn read at
 * one time.
 */
typedef void (*PyrateFileForeach) (PyrateFileVisitor visit, void *visit_arg, bool durable_only,
								   uint64 *lsn, void *arg);
/*
 * Insert one restored bucket holding n items as (ts, weight) pairs, oldest
 * first, every one checked, with the group field it had (checked: a group
 * below PYRATE_GROUPS, and maybe PYRATE_GROUP_DURABLE; 0 in a file written
 * before 1.3); false when it did not fit.
 */
typedef bool (*PyrateFileInsert) (Oid dbid, const char *name, uint32 group,
								  const int64 *pairs, uint32 n, void *arg);

/* What a start restored. */
typedef enum PyrateRestored
{
	PYRATE_RESTORED_NOTHING,
	PYRATE_RESTORED_SAVED,		/* every bucket, from a clean shutdown */
	PYRATE_RESTORED_DURABLE		/* the durable buckets, from a save while running */
} PyrateRestored;

/*
 * Restore the saved buckets; lsn[PYRATE_PARTITIONS] gets their partitions'
 * lsns (0 when none), redo the redo pointer recovery starts from, from the
 * WAL position whose changes the buckets may not hold: recovery replays the
 * records between it and redo first.
 */
PyrateRestored pyrate_memory_file_restore(PyrateFileInsert insert, void *arg, uint64 *lsn,
										  uint64 *redo, uint64 *from);
/* Save every bucket, when the server shut down cleanly (postmaster). */
void		pyrate_memory_file_save(PyrateFileForeach foreach, void *arg);
/*
 * Save the durable buckets: with their partitions' lsns, the redo pointer
 * of the moment and from, a WAL position before which every record's change
 * is in them.
 */
bool		pyrate_memory_file_save_durable(PyrateFileForeach foreach, void *arg, uint64 redo,
											uint64 from);
/* Remove the file: nothing in it may come back. */
void		pyrate_memory_file_forget(void);

#endif							/* PYRATE_MEMORY_FILE_H */
