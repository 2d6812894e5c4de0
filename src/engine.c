/*
 * engine.c — choosing a storage engine for a bucket.
 */
#include "pyrate.h"

#include "utils/guc.h"

#include "engine.h"

const struct config_enum_entry pyrate_storage_options[] = {
	{"table", PYRATE_STORAGE_TABLE, false},
	{"memory", PYRATE_STORAGE_MEMORY, false},
	{NULL, 0, false}
};

const char *
pyrate_storage_name(PyrateStorage s)
{
	return s == PYRATE_STORAGE_MEMORY ? "memory" : "table";
}

const PyrateEngine *
pyrate_engine(PyrateStorage storage)
{
	if (storage == PYRATE_STORAGE_TABLE)
		return &pyrate_table_engine;
	if (pyrate_memory_available())
		return &pyrate_memory_engine;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the memory storage engine is not available"),
			 errdetail("Buckets in shared memory need pyrate loaded when the server starts."),
			 errhint("Add pyrate to shared_preload_libraries in postgresql.conf and restart the server, or use storage 'table'.")));
	return NULL;				/* keep compiler quiet */
}

int
pyrate_engines(const PyrateEngine **engines)
{
	int			n = 0;

	engines[n++] = &pyrate_table_engine;
	if (pyrate_memory_available())
		engines[n++] = &pyrate_memory_engine;
	return n;
}

void
pyrate_bucket_init(PyrateBucket *b, Oid nsp, const char *name)
{
	const PyrateDefinition *d;

	pyrate_check_name("bucket name", name);
	d = pyrate_route(nsp, name);
	b->nsp = nsp;
	b->name = name;
	b->exact = false;
	b->def = *d;
	b->def.pattern = pstrdup(d->pattern);
}
