/*
 * worker.h — the background worker that leaks every bucket.
 */
#ifndef PYRATE_WORKER_H
#define PYRATE_WORKER_H

#include "base.h"

/* The GUCs pyrate.leak_interval (ms) and pyrate.database. */
extern int	pyrate_leak_interval;
extern char *pyrate_database;

/*
 * Defines the worker's settings and, when preloading, its shared status
 * and its registration with the postmaster.
 */
void		pyrate_worker_init(void);

#endif							/* PYRATE_WORKER_H */
