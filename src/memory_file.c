/*
 * memory_file.c — the memory engine's buckets across a restart and a crash.
 *
 * PYRATE_MEMORY_FILE in the data directory holds saved buckets (written to
 * a temp file, then durably renamed):
 *   "saved": every bucket, written by the postmaster at a clean shutdown;
 *   "durable": the durable buckets only, written at startup once restored,
 *     and by the saver (worker.c) each time a checkpoint or restartpoint
 *     moves the redo pointer, before that checkpoint can complete.
 * With each partition's buckets goes the partition's lsn (memory_wal.h):
 * they hold exactly the changes logged up to it.  Restored at startup, after
 * a crash too, the buckets then take the WAL replayed from the redo pointer
 * on: recovery rebuilds the durable buckets as they were, and the volatile
 * ones come back only from a clean shutdown.  A file of format 1 (before
 * 1.4) is read as before: saved buckets, or a "running" marker.
 *
 * Layout, native byte order (the file never leaves its server):
 *   FileHeader (format 2: then PYRATE_PARTITIONS lsns)
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
#define PYRATE_FILE_VERSION		2
#define PYRATE_FILE_VERSION_1	1		/* before 1.4: no lsns, no durable buckets */

#define STATE_RUNNING	1		/* format 1 only */
#define STATE_SAVED		2
#define STATE_DURABLE	3

typedef struct FileHeader
{
	uint32		magic;
	uint32		version;
	uint32		state;
	uint32		reserved;
	int64		buckets;
	int64		items;
	uint64		redo;			/* format 2: the redo pointer when it was saved */
	uint64		from;			/* format 2: WAL to replay from on top of it */
} FileHeader;

/* format 1's header: FileHeader without redo and from */
#define HEADER_SIZE(version) \
	((version) == PYRATE_FILE_VERSION_1 ? offsetof(FileHeader, redo) : sizeof(FileHeader))

typedef struct FileBucket
{
	Oid			dbid;
	uint32		namelen;
	uint32		nitems;
	uint32		group;			/* its group field (max_buckets, durable); 0 before 1.3 */
} FileBucket;

/* ---- writing ------------------------------------------------------- */

/*
 * The buckets are serialized into memory first (under their partition's
 * lock when the server runs), then written without any lock held.
 */
#define CHUNK_SIZE ((Size) 1024 * 1024)

typedef struct Chunk
{
	struct Chunk *next;
	Size		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} Chunk;

typedef struct Collected
{
	Chunk	   *first;
	Chunk	   *last;
	int64		buckets;
	int64		items;
	uint64		lsn[PYRATE_PARTITIONS];
} Collected;

static void
append(Collected *c, const void *p, Size n)
{
	while (n > 0)
	{
		Size		take;

		if (c->last == NULL || c->last->len == CHUNK_SIZE)
		{
			Chunk	   *ch = MemoryContextAlloc(CurrentMemoryContext,
											   offsetof(Chunk, data) + CHUNK_SIZE);

			ch->next = NULL;
			ch->len = 0;
			if (c->last)
				c->last->next = ch;
			else
				c->first = ch;
			c->last = ch;
		}
		take = Min(n, CHUNK_SIZE - c->last->len);
		memcpy(c->last->data + c->last->len, p, take);
		c->last->len += take;
		p = (const char *) p + take;
		n -= take;
	}
}

static void
collect_bucket(Oid dbid, const char *name, uint32 namelen, uint32 group, const pyr_log *log,
			   void *arg)
{
	Collected  *c = arg;
	FileBucket	fb;
	int64		prev = log->base;
	uint32		i;

	memset(&fb, 0, sizeof(fb));
	fb.dbid = dbid;
	fb.namelen = namelen;
	fb.nitems = log->len;
	fb.group = group;
	append(c, &fb, sizeof(fb));
	append(c, name, namelen);
	/* entry i (0 = oldest) is at e[(head + i) & (cap - 1)]; see pyrate_core.h */
	for (i = 0; i < log->len; i++)
	{
		const pyr_entry *e = &log->e[(log->head + i) & (log->cap - 1)];
		int64		pair[2];

		pair[0] = e->ts;
		pair[1] = e->cum - prev;
		prev = e->cum;
		append(c, pair, sizeof(pair));
	}
	c->buckets++;
	c->items += log->len;
}

static void
free_collected(Collected *c)
{
	while (c->first)
	{
		Chunk	   *next = c->first->next;

		pfree(c->first);
		c->first = next;
	}
}

/* Write the file in the given state from what was collected. */
static bool
write_file(const Collected *c, uint32 state, uint64 redo, uint64 from)
{
	FILE	   *f;
	pg_crc32c	crc;
	FileHeader	h;
	const Chunk *ch;
	bool		failed = false;

	f = AllocateFile(PYRATE_MEMORY_TMP, PG_BINARY_W);
	if (f == NULL)
		goto fail;
	memset(&h, 0, sizeof(h));
	h.magic = PYRATE_FILE_MAGIC;
	h.version = PYRATE_FILE_VERSION;
	h.state = state;
	h.buckets = c->buckets;
	h.items = c->items;
	h.redo = redo;
	h.from = from;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &h, sizeof(h));
	COMP_CRC32C(crc, c->lsn, sizeof(c->lsn));
	if (fwrite(&h, sizeof(h), 1, f) != 1 || fwrite(c->lsn, sizeof(c->lsn), 1, f) != 1)
		failed = true;
	for (ch = c->first; ch != NULL && !failed; ch = ch->next)
	{
		COMP_CRC32C(crc, ch->data, ch->len);
		if (fwrite(ch->data, 1, ch->len, f) != ch->len)
			failed = true;
	}
	FIN_CRC32C(crc);
	if (!failed && fwrite(&crc, sizeof(crc), 1, f) != 1)
		failed = true;
	if (FreeFile(f) != 0 || failed)
	{
		f = NULL;
		goto fail;
	}
	if (durable_rename(PYRATE_MEMORY_TMP, PYRATE_MEMORY_FILE, LOG) != 0)
	{
		unlink(PYRATE_MEMORY_TMP);
		return false;
	}
	return true;

fail:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("pyrate: could not write file \"%s\": %m", PYRATE_MEMORY_TMP)));
	if (f)
		FreeFile(f);
	unlink(PYRATE_MEMORY_TMP);
	return false;
}

/*
 * Collect the buckets (only the durable ones when durable_only) and write
 * the file in the given state; c keeps the counts, its chunks freed.
 */
static bool
save(PyrateFileForeach foreach, void *arg, bool durable_only, uint32 state, uint64 redo,
	 uint64 from, Collected *c)
{
	bool		ok;

	memset(c, 0, sizeof(*c));
	foreach(collect_bucket, c, durable_only, c->lsn, arg);
	ok = write_file(c, state, redo, from);
	free_collected(c);
	return ok;
}

/*
 * The control file's state: whether the server shut down cleanly, and the
 * redo pointer of its last checkpoint (where recovery starts).  false when
 * it cannot be read.
 */
static bool
read_control(bool *clean, uint64 *redo)
{
	ControlFileData *cf;
	bool		crc_ok = false;
	MemoryContext cxt = CurrentMemoryContext;

	*clean = false;
	*redo = 0;
	PG_TRY();
	{
		cf = get_controlfile(DataDir, &crc_ok);
		if (crc_ok)
		{
			*clean = cf->state == DB_SHUTDOWNED || cf->state == DB_SHUTDOWNED_IN_RECOVERY;
			*redo = cf->checkPointCopy.redo;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		crc_ok = false;
	}
	PG_END_TRY();
	return crc_ok;
}

void
pyrate_memory_file_save(PyrateFileForeach foreach, void *arg)
{
	Collected	c;
	bool		clean;
	uint64		redo;

	/*
	 * The postmaster exits with code 0 after an immediate shutdown too, with
	 * no shutdown checkpoint: only a clean stop is worth saving.  Otherwise
	 * the last durable save stays, for the WAL to replay on.
	 */
	if (!read_control(&clean, &redo) || !clean)
	{
		ereport(LOG,
				(errmsg("pyrate: not saving the memory engine's buckets: the server did not shut down cleanly")));
		return;
	}
	if (save(foreach, arg, false, STATE_SAVED, redo, redo, &c))
		ereport(LOG,
				(errmsg("pyrate: saved %lld memory bucket(s) holding %lld item(s) to \"%s\"",
						(long long) c.buckets, (long long) c.items, PYRATE_MEMORY_FILE)));
}

bool
pyrate_memory_file_save_durable(PyrateFileForeach foreach, void *arg, uint64 redo, uint64 from)
{
	Collected	c;

	return save(foreach, arg, true, STATE_DURABLE, redo, from, &c);
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
				 fb.nitems > (UINT32_C(1) << 31) ||
				 (fb.group & ~(uint32) PYRATE_GROUP_DURABLE) >= PYRATE_GROUPS)
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

/*
 * Restore from the open file f; returns its state (0 when nothing was
 * restored) and, with format 2, its lsns and redo pointer.
 */
static uint32
restore_from(FILE *f, PyrateFileInsert insert, void *arg, uint64 *lsn, uint64 *redo,
			 uint64 *from)
{
	Reader		r;
	FileHeader	h;
	int64		restored = 0;
	int64		restored_items = 0;
	int64		dropped = 0;
	struct stat st;
	uint64		stamps[PYRATE_PARTITIONS];
	Size		head;

	memset(&r, 0, sizeof(r));
	memset(&h, 0, sizeof(h));
	memset(stamps, 0, sizeof(stamps));
	r.f = f;
	INIT_CRC32C(r.crc);
	if (fstat(fileno(f), &st) != 0)
	{
		r.problem = "its size cannot be read";
		goto corrupt;
	}
	r.left = st.st_size;
	if (!get(&r, &h, HEADER_SIZE(PYRATE_FILE_VERSION_1)))
		goto corrupt;
	if (h.magic != PYRATE_FILE_MAGIC)
	{
		r.problem = "it is not a pyrate memory file";
		goto corrupt;
	}
	if (h.version != PYRATE_FILE_VERSION && h.version != PYRATE_FILE_VERSION_1)
	{
		ereport(WARNING,
				(errmsg("pyrate: ignoring \"%s\": it was written in format version %u, this server reads %u",
						PYRATE_MEMORY_FILE, h.version, PYRATE_FILE_VERSION),
				 errdetail("The memory engine starts empty.")));
		return 0;
	}
	if (h.version == PYRATE_FILE_VERSION_1 && h.state == STATE_RUNNING)
	{
		ereport(LOG,
				(errmsg("pyrate: the memory engine starts empty: the server did not shut down cleanly"),
				 errdetail("Buckets in shared memory were saved only at a clean shutdown (smart or fast) "
						   "before pyrate 1.4.")));
		return 0;
	}
	head = HEADER_SIZE(h.version);
	if (h.version == PYRATE_FILE_VERSION &&
		(!get(&r, &h.redo, sizeof(h) - HEADER_SIZE(PYRATE_FILE_VERSION_1)) ||
		 !get(&r, stamps, sizeof(stamps))))
		goto corrupt;
	/* every bucket takes a record, every item 16 bytes: check before reading */
	if ((h.state != STATE_SAVED && !(h.version == PYRATE_FILE_VERSION && h.state == STATE_DURABLE)) ||
		h.buckets < 0 || h.items < 0 ||
		h.buckets > r.left / (off_t) sizeof(FileBucket) ||
		h.items > r.left / (off_t) (2 * sizeof(int64)))
	{
		r.problem = "its header is malformed";
		goto corrupt;
	}
	/* check it all first: a bad file restores nothing */
	if (!read_buckets(&r, &h, NULL, NULL, NULL, NULL, NULL))
		goto corrupt;
	head += h.version == PYRATE_FILE_VERSION ? sizeof(stamps) : 0;
	if (fseeko(f, head, SEEK_SET) != 0)
	{
		r.problem = "a seek failed";
		goto corrupt;
	}
	r.left = st.st_size - head;
	if (!read_buckets(&r, &h, insert, arg, &restored, &restored_items, &dropped))
		goto corrupt;
	if (h.state == STATE_SAVED)
		ereport(LOG,
				(errmsg("pyrate: restored %lld memory bucket(s) holding %lld item(s) from \"%s\"",
						(long long) restored, (long long) restored_items, PYRATE_MEMORY_FILE)));
	else
		ereport(LOG,
				(errmsg("pyrate: restored %lld durable memory bucket(s) holding %lld item(s) as saved at %X/%X; volatile buckets start empty",
						(long long) restored, (long long) restored_items, LSN_FORMAT_ARGS(h.redo)),
				 errdetail("Volatile buckets are saved only at a clean shutdown; the WAL replayed from the last checkpoint adds the durable buckets' changes since the save.")));
	if (dropped > 0)
		ereport(WARNING,
				(errmsg("pyrate: %lld saved memory bucket(s) did not fit and were dropped", (long long) dropped),
				 errhint("pyrate.memory_size is smaller than when they were saved.")));
	memcpy(lsn, stamps, sizeof(stamps));
	*redo = h.redo;
	*from = h.from;
	return h.state;

corrupt:
	ereport(WARNING,
			(errmsg("pyrate: ignoring \"%s\": %s", PYRATE_MEMORY_FILE, r.problem),
			 errdetail("The memory engine starts empty.")));
	return 0;
}

PyrateRestored
pyrate_memory_file_restore(PyrateFileInsert insert, void *arg, uint64 *lsn, uint64 *redo,
						   uint64 *from)
{
	FILE	   *f = AllocateFile(PYRATE_MEMORY_FILE, PG_BINARY_R);
	uint32		state = 0;
	uint64		saved_redo = 0;
	uint64		saved_from = 0;
	bool		clean;

	memset(lsn, 0, sizeof(uint64) * PYRATE_PARTITIONS);
	if (f != NULL)
	{
		state = restore_from(f, insert, arg, lsn, &saved_redo, &saved_from);
		FreeFile(f);
	}
	else if (errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("pyrate: could not read file \"%s\": %m", PYRATE_MEMORY_FILE),
				 errdetail("The memory engine starts empty.")));
	if (state == 0)
		memset(lsn, 0, sizeof(uint64) * PYRATE_PARTITIONS);
	if (!read_control(&clean, redo))
		*redo = 0;
	/*
	 * Recovery replays the WAL from the last checkpoint's redo pointer on;
	 * what was logged between a durable save and that pointer is replayed
	 * first (memory_wal.c), from the WAL the saver keeps for it.
	 */
	*from = state == STATE_DURABLE ? Min(saved_from, *redo) : *redo;
	return state == STATE_DURABLE ? PYRATE_RESTORED_DURABLE :
		state != 0 ? PYRATE_RESTORED_SAVED : PYRATE_RESTORED_NOTHING;
}

void
pyrate_memory_file_forget(void)
{
	if (unlink(PYRATE_MEMORY_FILE) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("pyrate: could not remove file \"%s\": %m", PYRATE_MEMORY_FILE),
				 errdetail("The buckets saved in it may be restored again at a later start.")));
}
