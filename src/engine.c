/*
 * engine.c — choosing a storage engine for a bucket.
 */
#include "engine.h"

#include "access/xlog.h"

#include "engine_memory.h"
#include "engine_table.h"

const PyrateEngine *
pyrate_engine_or_null(PyrateStorage storage)
{
	if (storage == PYRATE_STORAGE_TABLE)
		return &pyrate_table_engine;
	if (pyrate_memory_available())
		return &pyrate_memory_engine;
	return NULL;
}

const PyrateEngine *
pyrate_engine(PyrateStorage storage)
{
	const PyrateEngine *e = pyrate_engine_or_null(storage);

	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the memory storage engine is not available"),
				 errdetail("Buckets in shared memory need pyrate loaded when the server starts."),
				 errhint("Add pyrate to shared_preload_libraries in postgresql.conf and restart the server, or use storage 'table'.")));
	return e;
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

int
pyrate_engines_writable(const PyrateEngine **engines)
{
	const PyrateEngine *all[PYRATE_MAX_ENGINES];
	int			nall = pyrate_engines(all);
	bool		recovery = RecoveryInProgress();
	int			n = 0;
	int			i;

	for (i = 0; i < nall; i++)
		if (!(all[i]->in_tables && recovery))
			engines[n++] = all[i];
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
	memset(&b->listed, 0, sizeof(b->listed));
	b->def = *d;
	b->def.pattern = pstrdup(d->pattern);
}
