/*
 * compat.h — the PostgreSQL versions pyrate builds on.
 *
 * pyrate is built and tested on PostgreSQL 15 only: it uses
 * shmem_request_hook (new in 15) and heap calls with their 15 signatures
 * (heap_update and simple_heap_update changed in 16).  Other versions are
 * refused here, with a clear message, rather than failing somewhere in the
 * build.
 */
#ifndef PYRATE_COMPAT_H
#define PYRATE_COMPAT_H

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 160000
#error "pyrate is built and tested on PostgreSQL 15 only"
#endif

#endif							/* PYRATE_COMPAT_H */
