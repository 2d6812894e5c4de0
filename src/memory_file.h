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
/* The engine's walk over every bucket, calling visit(..., visit_arg). */
typedef void (*PyrateFileForeach) (PyrateFileVisitor visit, void *visit_arg, void *arg);
/*
 * Insert one restored bucket holding n items as (ts, weight) pairs, oldest
 * first, every one checked, in the group it counted in (checked: below
 * PYRATE_GROUPS; 0 in a file written before 1.3); false when it did not fit.
 */
typedef bool (*PyrateFileInsert) (Oid dbid, const char *name, uint32 group,
								  const int64 *pairs, uint32 n, void *arg);

/* Restore the saved buckets, then mark the file "running". */
void		pyrate_memory_file_restore(PyrateFileInsert insert, void *arg);
/* Save every bucket, when the server shut down cleanly. */
void		pyrate_memory_file_save(PyrateFileForeach foreach, void *arg);

#endif							/* PYRATE_MEMORY_FILE_H */
