/*
 * engine.h — choosing a storage engine, and a bucket's engine and
 * definition from its name.
 */
#ifndef PYRATE_ENGINE_H
#define PYRATE_ENGINE_H

#include "bucket.h"

/* The engine for a storage; ERROR when it is not available here. */
const PyrateEngine *pyrate_engine(PyrateStorage storage);
/* Same, NULL when it is not available here. */
const PyrateEngine *pyrate_engine_or_null(PyrateStorage storage);

/* The engines available in this backend (table; memory when preloaded). */
#define PYRATE_MAX_ENGINES 2
int			pyrate_engines(const PyrateEngine **engines);
/* Same, less those that cannot change anything now (table during recovery). */
int			pyrate_engines_writable(const PyrateEngine **engines);

/* Fill b for a name: check it, route it, copy the definition. */
void		pyrate_bucket_init(PyrateBucket *b, Oid nsp, const char *name);

#endif							/* PYRATE_ENGINE_H */
