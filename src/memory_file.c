/*
 * memory_file.c — the memory engine's buckets across a restart.
 *
 * At a clean shutdown the postmaster writes every bucket to
 * PYRATE_MEMORY_FILE in the data directory (a temp file, then a durable
 * rename).  At startup it reads them back and at once replaces the file with
 * a "running" marker, so a server that stops without saving (a crash, an
 * immediate shutdown) leaves the marker behind and the next start says the
 * buckets were lost.
 *
 * Layout, native byte order (the file never leaves its server):
 *   FileHeader
 *   per bucket: FileBucket, the name (namelen bytes), nitems x (ts, weight)
 *   a CRC-32C of everything before it
 * Nothing is restored from a file that fails any check.
 */
#include "memory_file.h"

#include "memory_arena.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "utils/memutils.h"


#define PYRATE_MEMORY_FILE		"pyrate_memory.state"
#define PYRATE_MEMORY_TMP		PYRATE_MEMORY_FILE ".tmp"
#define PYRATE_FILE_MAGIC		0x50595254	/* "PYRT" */
#define PYRATE_FILE_VERSION		1

#define STATE_RUNNING	1
#define STATE_SAVED		2

typedef struct FileHeader
{
	uint32		magic;
	uint32		version;
	uint32		state;
	uint32		reserved;
	int64		buckets;
	int64		items;
} FileHeader;

typedef struct FileBucket
{
	Oid			dbid;
	uint32		namelen;
	uint32		nitems;
	uint32		group;			/* the group it counted in (max_buckets); 0 before 1.3 */
} FileBucket;

/* ---- writing ------------------------------------------------------- */

typedef struct Writer
{
	FILE	   *f;
	pg_crc32c	crc;
	bool		failed;
	int64		buckets;
	int64		items;
} Writer;

static void
put(Writer *w, const void *p, size_t n)
{
	if (w->failed || n == 0)
		return;
	COMP_CRC32C(w->crc, p, n);
	if (fwrite(p, 1, n, w->f) != n)
		w->failed = true;
}

static void
count_bucket(Oid dbid, const char *name, uint32 namelen, uint32 group, const pyr_log *log,
			 void *arg)
{
	Writer	   *w = arg;

	w->buckets++;
	w->items += log->len;
}

static void
write_bucket(Oid dbid, const char *name, uint32 namelen, uint32 group, const pyr_log *log,
			 void *arg)
{
	Writer	   *w = arg;
	FileBucket	fb;
	int64		prev = log->base;
	uint32		i;

	memset(&fb, 0, sizeof(fb));
	fb.dbid = dbid;
	fb.namelen = namelen;
	fb.nitems = log->len;
	fb.group = group;
	put(w, &fb, sizeof(fb));
	put(w, name, namelen);
	/* entry i (0 = oldest) is at e[(head + i) & (cap - 1)]; see pyrate_core.h */
	for (i = 0; i < log->len; i++)
	{
		const pyr_entry *e = &log->e[(log->head + i) & (log->cap - 1)];
		int64		pair[2];

		pair[0] = e->ts;
		pair[1] = e->cum - prev;
		prev = e->cum;
		put(w, pair, sizeof(pair));
	}
}

/* Write the file in the given state, with the buckets when foreach is given. */
static bool
write_file(PyrateFileForeach foreach, void *arg, uint32 state, int64 *buckets, int64 *items)
{
	Writer		w;
	FileHeader	h;

	memset(&w, 0, sizeof(w));
	if (foreach != NULL)
		foreach(count_bucket, &w, arg);
	w.f = AllocateFile(PYRATE_MEMORY_TMP, PG_BINARY_W);
	if (w.f == NULL)
		goto fail;
	INIT_CRC32C(w.crc);
	memset(&h, 0, sizeof(h));
	h.magic = PYRATE_FILE_MAGIC;
	h.version = PYRATE_FILE_VERSION;
	h.state = state;
	h.buckets = w.buckets;
	h.items = w.items;
	put(&w, &h, sizeof(h));
	if (foreach != NULL)
		foreach(write_bucket, &w, arg);
	FIN_CRC32C(w.crc);
	if (!w.failed && fwrite(&w.crc, sizeof(w.crc), 1, w.f) != 1)
		w.failed = true;
	if (FreeFile(w.f) != 0 || w.failed)
	{
		w.f = NULL;
		goto fail;
	}
	if (durable_rename(PYRATE_MEMORY_TMP, PYRATE_MEMORY_FILE, LOG) != 0)
	{
		unlink(PYRATE_MEMORY_TMP);
		return false;
	}
	*buckets = w.buckets;
	*items = w.items;
	return true;

fail:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("pyrate: could not write file \"%s\": %m", PYRATE_MEMORY_TMP)));
	if (w.f)
		FreeFile(w.f);
	unlink(PYRATE_MEMORY_TMP);
	return false;
}

/* Whether pg_control says the server shut down cleanly. */
static bool
clean_shutdown(void)
{
	ControlFileData *cf;
	bool		crc_ok = false;
	bool		clean = false;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		cf = get_controlfile(DataDir, &crc_ok);
		clean = crc_ok && (cf->state == DB_SHUTDOWNED ||
						   cf->state == DB_SHUTDOWNED_IN_RECOVERY);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		clean = false;
	}
	PG_END_TRY();
	return clean;
}

void
pyrate_memory_file_save(PyrateFileForeach foreach, void *arg)
{
	int64		buckets;
	int64		items;

	/*
	 * The postmaster exits with code 0 after an immediate shutdown too, with
	 * no shutdown checkpoint: only a clean stop is worth saving.
	 */
	if (!clean_shutdown())
	{
		ereport(LOG,
				(errmsg("pyrate: not saving the memory engine's buckets: the server did not shut down cleanly")));
		return;
	}
	if (write_file(foreach, arg, STATE_SAVED, &buckets, &items))
		ereport(LOG,
				(errmsg("pyrate: saved %lld memory bucket(s) holding %lld item(s) to \"%s\"",
						(long long) buckets, (long long) items, PYRATE_MEMORY_FILE)));
}

/* ---- reading ------------------------------------------------------- */

typedef struct Reader
{
	FILE	   *f;
	pg_crc32c	crc;
	const char *problem;
	off_t		left;			/* bytes of the file not read yet */
} Reader;

/*
 * Whether the file still holds n bytes.  Every count read from the file is
 * checked against this before anything is allocated for it: a corrupt
 * header must never make the postmaster allocate what the file cannot hold.
 */
static bool
holds(Reader *r, uint64 n)
{
	if (r->left < 0 || n > (uint64) r->left)
	{
		r->problem = "it is shorter than its counts say";
		return false;
	}
	return true;
}

static bool
get(Reader *r, void *p, size_t n)
{
	if (n == 0)
		return true;
	if (!holds(r, n) || fread(p, 1, n, r->f) != n)
	{
		if (!r->problem || ferror(r->f))
			r->problem = ferror(r->f) ? "a read failed" : "it ends too early";
		return false;
	}
	r->left -= n;
	COMP_CRC32C(r->crc, p, n);
	return true;
}

/*
 * Read every bucket after the header.  Without insert, only check them (and
 * the checksum); with it, insert them and count what fit.
 */
static bool
read_buckets(Reader *r, const FileHeader *h, PyrateFileInsert insert, void *arg,
			 int64 *restored, int64 *restored_items, int64 *dropped)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "pyrate restore",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	char	   *name = palloc(PYRATE_MAX_NAME + 1);
	int64		items = 0;
	int64		i;
	bool		ok = true;

	for (i = 0; ok && i < h->buckets; i++)
	{
		FileBucket	fb;
		int64	   *pairs = NULL;
		uint32		j;

		if (!get(r, &fb, sizeof(fb)))
			ok = false;
		else if (fb.namelen == 0 || fb.namelen > PYRATE_MAX_NAME ||
				 fb.nitems > (UINT32_C(1) << 31) || fb.group >= PYRATE_GROUPS)
		{
			r->problem = "a bucket record is malformed";
			ok = false;
		}
		else if (!get(r, name, fb.namelen))
			ok = false;
		else if (!holds(r, (uint64) fb.nitems * 2 * sizeof(int64)))
			ok = false;
		else
		{
			name[fb.namelen] = '\0';
			if (fb.nitems > 0)
				pairs = MemoryContextAllocHuge(cxt, (Size) fb.nitems * 2 * sizeof(int64));
			if (fb.nitems > 0 && !get(r, pairs, (Size) fb.nitems * 2 * sizeof(int64)))
				ok = false;
			for (j = 0; ok && j < fb.nitems; j++)
				if (pairs[2 * j + 1] <= 0 || pairs[2 * j + 1] > PYR_MAX_WEIGHT ||
					pairs[2 * j] < PYR_MIN_TS || pairs[2 * j] > PYR_MAX_TS)
				{
					r->problem = "a bucket's item has a weight or timestamp out of range";
					ok = false;
				}
				else if (j > 0 && pairs[2 * j] < pairs[2 * j - 2])
				{
					r->problem = "a bucket's items are out of order";
					ok = false;
				}
		}
		if (ok)
		{
			items += fb.nitems;
			if (insert != NULL)
			{
				if (insert(fb.dbid, name, fb.group, pairs, fb.nitems, arg))
				{
					(*restored)++;
					*restored_items += fb.nitems;
				}
				else
					(*dropped)++;
			}
		}
		if (pairs)
			pfree(pairs);
	}
	if (ok && items != h->items)
	{
		r->problem = "its item count does not match";
		ok = false;
	}
	if (ok && insert == NULL)
	{
		pg_crc32c	stored;
		char		extra;

		FIN_CRC32C(r->crc);
		if (fread(&stored, sizeof(stored), 1, r->f) != 1)
		{
			r->problem = "its checksum is missing";
			ok = false;
		}
		else if (!EQ_CRC32C(stored, r->crc))
		{
			r->problem = "its checksum does not match";
			ok = false;
		}
		else if (fread(&extra, 1, 1, r->f) != 0)
		{
			r->problem = "it has data past its end";
			ok = false;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return ok;
}

static void
restore_from(FILE *f, PyrateFileInsert insert, void *arg)
{
	Reader		r;
	FileHeader	h;
	int64		restored = 0;
	int64		restored_items = 0;
	int64		dropped = 0;
	struct stat st;

	memset(&r, 0, sizeof(r));
	r.f = f;
	INIT_CRC32C(r.crc);
	if (fstat(fileno(f), &st) != 0)
	{
		r.problem = "its size cannot be read";
		goto corrupt;
	}
	r.left = st.st_size;
	if (!get(&r, &h, sizeof(h)))
		goto corrupt;
	if (h.magic != PYRATE_FILE_MAGIC)
	{
		r.problem = "it is not a pyrate memory file";
		goto corrupt;
	}
	if (h.version != PYRATE_FILE_VERSION)
	{
		ereport(WARNING,
				(errmsg("pyrate: ignoring \"%s\": it was written in format version %u, this server reads %u",
						PYRATE_MEMORY_FILE, h.version, PYRATE_FILE_VERSION),
				 errdetail("The memory engine starts empty.")));
		return;
	}
	if (h.state == STATE_RUNNING)
	{
		ereport(LOG,
				(errmsg("pyrate: the memory engine starts empty: the server did not shut down cleanly"),
				 errdetail("Buckets in shared memory are saved only at a clean shutdown (smart or fast); "
						   "after a crash or an immediate shutdown they are lost.")));
		return;
	}
	/* every bucket takes a record, every item 16 bytes: check before reading */
	if (h.state != STATE_SAVED || h.buckets < 0 || h.items < 0 ||
		h.buckets > r.left / (off_t) sizeof(FileBucket) ||
		h.items > r.left / (off_t) (2 * sizeof(int64)))
	{
		r.problem = "its header is malformed";
		goto corrupt;
	}
	/* check it all first: a bad file restores nothing */
	if (!read_buckets(&r, &h, NULL, NULL, NULL, NULL, NULL))
		goto corrupt;
	if (fseeko(f, sizeof(h), SEEK_SET) != 0)
	{
		r.problem = "a seek failed";
		goto corrupt;
	}
	r.left = st.st_size - sizeof(h);
	if (!read_buckets(&r, &h, insert, arg, &restored, &restored_items, &dropped))
		goto corrupt;
	ereport(LOG,
			(errmsg("pyrate: restored %lld memory bucket(s) holding %lld item(s) from \"%s\"",
					(long long) restored, (long long) restored_items, PYRATE_MEMORY_FILE)));
	if (dropped > 0)
		ereport(WARNING,
				(errmsg("pyrate: %lld saved memory bucket(s) did not fit and were dropped", (long long) dropped),
				 errhint("pyrate.memory_size is smaller than when they were saved.")));
	return;

corrupt:
	ereport(WARNING,
			(errmsg("pyrate: ignoring \"%s\": %s", PYRATE_MEMORY_FILE, r.problem),
			 errdetail("The memory engine starts empty.")));
}

void
pyrate_memory_file_restore(PyrateFileInsert insert, void *arg)
{
	FILE	   *f = AllocateFile(PYRATE_MEMORY_FILE, PG_BINARY_R);
	int64		buckets;
	int64		items;

	if (f != NULL)
	{
		restore_from(f, insert, arg);
		FreeFile(f);
	}
	else if (errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("pyrate: could not read file \"%s\": %m", PYRATE_MEMORY_FILE),
				 errdetail("The memory engine starts empty.")));
	/*
	 * From now on the file says "running" until a clean shutdown saves.
	 * Failing that, it must at least be gone: buckets saved there must never
	 * come back after a later start that saved nothing.
	 */
	if (!write_file(NULL, NULL, STATE_RUNNING, &buckets, &items) &&
		unlink(PYRATE_MEMORY_FILE) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("pyrate: could not remove file \"%s\": %m", PYRATE_MEMORY_FILE),
				 errdetail("The buckets saved in it may be restored again at a later start.")));
}
