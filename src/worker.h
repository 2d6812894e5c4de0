/*
 * worker.h — the background worker that leaks every bucket.
 */
#ifndef PYRATE_WORKER_H
#define PYRATE_WORKER_H

#include "base.h"

#include "catalog/objectaccess.h"

/* The GUCs pyrate.leak_interval (ms) and pyrate.database. */
extern int	pyrate_leak_interval;
extern bool pyrate_leak_vacuum;
extern char *pyrate_database;

/*
 * Defines the worker's settings and, when preloading, registers it with the
 * postmaster.
 */
void		pyrate_worker_init(void);
/* From pyrate.c's shared-memory hooks, when preloading: its status. */
void		pyrate_worker_shmem_request(void);
void		pyrate_worker_shmem_startup(void);
/* From pyrate.c's object access hook: CREATE EXTENSION wakes the worker. */
void		pyrate_worker_object_access(ObjectAccessType access, Oid classId, Oid objectId,
										int subId);

#endif							/* PYRATE_WORKER_H */
