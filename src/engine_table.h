/*
 * engine_table.h — the "table" storage engine: buckets in pyrate's shared,
 * WAL-logged tables.
 */
#ifndef PYRATE_ENGINE_TABLE_H
#define PYRATE_ENGINE_TABLE_H

#include "bucket.h"

extern const PyrateEngine pyrate_table_engine;

#endif							/* PYRATE_ENGINE_TABLE_H */
