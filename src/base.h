/*
 * base.h — the leaf helpers every extension module may use: bucket names,
 * the clock, and the schema holding the extension's objects.
 *
 * Below it: PostgreSQL and the algorithm module (src/core).  Nothing of
 * pyrate's own.
 */
#ifndef PYRATE_BASE_H
#define PYRATE_BASE_H

#include "postgres.h"

#include "fmgr.h"

#include "compat.h"
#include "pyrate_core.h"

/* Longest bucket name or pattern, in bytes. */
#define PYRATE_MAX_NAME 1024

/* The schema holding the extension's objects, from the calling function. */
Oid			pyrate_namespace(FunctionCallInfo fcinfo);

/* The server clock: milliseconds since the Unix epoch. */
int64		pyrate_now_ms(void);

/* ERROR unless name is a usable bucket name or pattern (what names it). */
void		pyrate_check_name(const char *what, const char *name);

#endif							/* PYRATE_BASE_H */
