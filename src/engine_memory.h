/*
 * engine_memory.h — the "memory" storage engine: buckets in shared memory,
 * saved at a clean shutdown and restored at start.  Needs pyrate in
 * shared_preload_libraries.
 */
#ifndef PYRATE_ENGINE_MEMORY_H
#define PYRATE_ENGINE_MEMORY_H

#include "bucket.h"

extern const PyrateEngine pyrate_memory_engine;

/* Whether the engine's shared memory exists (pyrate was preloaded). */
bool		pyrate_memory_available(void);

/*
 * Defines pyrate.memory_size and, when preloading, the engine's shared
 * memory (request and startup hooks); registers the hooks that empty a
 * dropped database's buckets.
 */
void		pyrate_memory_init(void);

#endif							/* PYRATE_ENGINE_MEMORY_H */
