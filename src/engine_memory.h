/*
 * engine_memory.h — the "memory" storage engine: buckets in shared memory,
 * durable ones WAL-logged (memory_wal.h) and saved by the saver (worker.c),
 * all saved at a clean shutdown and restored at start.  Needs pyrate in
 * shared_preload_libraries.
 */
#ifndef PYRATE_ENGINE_MEMORY_H
#define PYRATE_ENGINE_MEMORY_H

#include "bucket.h"

#include "access/xlogdefs.h"
#include "catalog/objectaccess.h"

extern const PyrateEngine pyrate_memory_engine;

/* Whether the engine's shared memory exists (pyrate was preloaded). */
bool		pyrate_memory_available(void);

/* Defines pyrate.memory_size (when preloading); registers the callbacks
 * that empty a dropped database's buckets at commit. */
void		pyrate_memory_init(void);
/* From pyrate.c's shared-memory hooks, when preloading. */
void		pyrate_memory_shmem_request(void);
void		pyrate_memory_shmem_startup(void);
/* From pyrate.c's object access hook: DROP EXTENSION / DROP DATABASE. */
void		pyrate_memory_object_access(ObjectAccessType access, Oid classId, Oid objectId,
										int subId);

/*
 * Save the durable buckets (the saver, worker.c) when the redo pointer is
 * redo; from: a WAL position before which every change is in memory (the
 * WAL insert position, or the replay position during recovery, read before
 * the save starts).  false when the file could not be written.
 */
bool		pyrate_memory_save(XLogRecPtr redo, XLogRecPtr from);
/* The redo pointer of the save made at startup (0 when it failed). */
XLogRecPtr	pyrate_memory_saved_redo(void);
/* Where the WAL recovery replays onto the restored buckets begins. */
XLogRecPtr	pyrate_memory_replay_from(void);
/*
 * Whether the buckets hold every change logged before the replay position:
 * false during recovery until it replayed what the restored ones lack.
 */
bool		pyrate_memory_restored_whole(void);

#endif							/* PYRATE_ENGINE_MEMORY_H */
