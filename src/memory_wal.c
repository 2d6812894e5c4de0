/*
 * memory_wal.c — the memory engine's WAL records: their layout, insertion,
 * description (pg_waldump, pg_walinspect) and redo, which hands each record
 * to the engine (engine_memory.c).
 *
 * Layout, after the record header (native byte order, as all WAL):
 *   put:     PutRecord, rates (nrates pyr_rate, only with slots), the name
 *   leak, flush, dispose, reclaim: ChangeRecord, the name
 *   clear:   ClearRecord
 * Every length is checked at redo against the record's: a record that does
 * not add up is a PANIC, as a corrupt record of any resource manager is.
 */
#include "memory_wal.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "storage/fd.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"

#include "memory_arena.h"

typedef struct PutRecord
{
	Oid			dbid;
	uint16		namelen;
	uint16		group;
	int64		ts;
	int32		weight;
	uint16		slots;
	uint16		nrates;			/* rates that follow: 0 without slots */
} PutRecord;

typedef struct ChangeRecord
{
	Oid			dbid;
	uint16		namelen;
	uint16		pad;
	int64		before;			/* leak, reclaim */
} ChangeRecord;

typedef struct ClearRecord
{
	Oid			dbid;
	int32		partition;
} ClearRecord;

static const PyrateWalReplay *replay = NULL;

/*
 * Insert the record begun, as no part of the caller's transaction: a memory
 * bucket's change stays whatever becomes of it.  XLogInsert makes the
 * record the transaction's last, and a commit would then ask the WAL writer
 * to flush it, waking it at nearly every commit (it flushes only every
 * wal_writer_delay, so the request is always ahead of the flush); the saver
 * asks for all of them instead, every SAVE_POLL_MS (worker.c).
 */
static XLogRecPtr
insert(uint8 info)
{
	XLogRecPtr	last = XactLastRecEnd;
	XLogRecPtr	end = XLogInsert(PYRATE_RMGR_ID, info);

	XactLastRecEnd = last;
	return end;
}

XLogRecPtr
pyrate_wal_put(Oid dbid, const char *name, uint32 namelen, uint16 group, int64 ts,
			   int64 weight, int slots, const pyr_rate *rates, int nrates)
{
	PutRecord	r;

	Assert(weight > 0 && weight <= PG_INT32_MAX && namelen <= PYRATE_MAX_NAME);
	memset(&r, 0, sizeof(r));
	r.dbid = dbid;
	r.namelen = (uint16) namelen;
	r.group = group;
	r.ts = ts;
	r.weight = (int32) weight;
	r.slots = (uint16) slots;
	r.nrates = slots > 0 ? (uint16) nrates : 0;
	XLogBeginInsert();
	XLogRegisterData((char *) &r, sizeof(r));
	if (r.nrates > 0)
		XLogRegisterData((char *) rates, sizeof(pyr_rate) * r.nrates);
	XLogRegisterData(unconstify(char *, name), namelen);
	return insert(XLOG_PYRATE_PUT);
}

XLogRecPtr
pyrate_wal_change(uint8 kind, Oid dbid, const char *name, uint32 namelen, int64 before)
{
	ChangeRecord r;

	memset(&r, 0, sizeof(r));
	r.dbid = dbid;
	r.namelen = (uint16) namelen;
	r.before = before;
	XLogBeginInsert();
	XLogRegisterData((char *) &r, sizeof(r));
	XLogRegisterData(unconstify(char *, name), namelen);
	return insert(kind);
}

XLogRecPtr
pyrate_wal_clear(Oid dbid, int partition)
{
	ClearRecord r;

	r.dbid = dbid;
	r.partition = partition;
	XLogBeginInsert();
	XLogRegisterData((char *) &r, sizeof(r));
	return insert(XLOG_PYRATE_CLEAR);
}

XLogRecPtr
pyrate_wal_nudge(void)
{
	static XLogRecPtr nudged = InvalidXLogRecPtr;
	XLogRecPtr	logged = InvalidXLogRecPtr;
	XLogRecPtr	newest = InvalidXLogRecPtr;
	int			p;

	/*
	 * The end of the last record this server logged.  (Not the insert
	 * position: after a WAL switch it lies past pages not yet initialized,
	 * and the WAL writer may not be asked for those; nor a restored lsn.)
	 */
	for (p = 0; p < PYRATE_PARTITIONS; p++)
	{
		LWLockAcquire(&pyrate_locks[p].lock, LW_SHARED);
		logged = Max(logged, pyrate_shared->parts[p].logged);
		newest = Max(newest, pyrate_shared->parts[p].lsn);
		LWLockRelease(&pyrate_locks[p].lock);
	}
	if (logged > nudged && !RecoveryInProgress())
		XLogSetAsyncXactLSN(logged);
	nudged = Max(nudged, logged);
	return newest;
}

/* ---- reading a record --------------------------------------------- */

typedef struct Parsed
{
	uint8		kind;
	Oid			dbid;
	char		name[PYRATE_MAX_NAME + 1];
	int64		ts;				/* put: the item's; leak, reclaim: before */
	int64		weight;
	uint16		group;
	int			slots;
	int			nrates;
	pyr_rate	rates[PYR_MAX_RATES];
	int			partition;		/* clear */
} Parsed;

/* false when the record does not add up */
static bool
parse(XLogReaderState *record, Parsed *p)
{
	const char *data = XLogRecGetData(record);
	Size		len = XLogRecGetDataLen(record);
	Size		namelen;

	memset(p, 0, sizeof(*p));
	p->kind = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	if (p->kind == XLOG_PYRATE_CLEAR)
	{
		ClearRecord r;

		if (len != sizeof(r))
			return false;
		memcpy(&r, data, sizeof(r));
		p->dbid = r.dbid;
		p->partition = r.partition;
		return r.partition >= 0 && r.partition < PYRATE_PARTITIONS;
	}
	if (p->kind == XLOG_PYRATE_PUT)
	{
		PutRecord	r;

		if (len < sizeof(r))
			return false;
		memcpy(&r, data, sizeof(r));
		if (r.nrates > PYR_MAX_RATES || r.weight <= 0 ||
			len < sizeof(r) + sizeof(pyr_rate) * r.nrates)
			return false;
		p->dbid = r.dbid;
		p->group = r.group;
		p->ts = r.ts;
		p->weight = r.weight;
		p->slots = r.slots;
		p->nrates = r.nrates;
		memcpy(p->rates, data + sizeof(r), sizeof(pyr_rate) * r.nrates);
		namelen = r.namelen;
		data += sizeof(r) + sizeof(pyr_rate) * r.nrates;
		len -= sizeof(r) + sizeof(pyr_rate) * r.nrates;
	}
	else if (p->kind <= XLOG_PYRATE_RECLAIM)
	{
		ChangeRecord r;

		if (len < sizeof(r))
			return false;
		memcpy(&r, data, sizeof(r));
		p->dbid = r.dbid;
		p->ts = r.before;
		namelen = r.namelen;
		data += sizeof(r);
		len -= sizeof(r);
	}
	else
		return false;
	if (namelen == 0 || namelen > PYRATE_MAX_NAME || len != namelen)
		return false;
	memcpy(p->name, data, namelen);
	p->name[namelen] = '\0';
	return true;
}

static const char *
pyrate_identify(uint8 info)
{
	switch (info & ~XLR_INFO_MASK)
	{
		case XLOG_PYRATE_PUT:
			return "PUT";
		case XLOG_PYRATE_LEAK:
			return "LEAK";
		case XLOG_PYRATE_FLUSH:
			return "FLUSH";
		case XLOG_PYRATE_DISPOSE:
			return "DISPOSE";
		case XLOG_PYRATE_RECLAIM:
			return "RECLAIM";
		case XLOG_PYRATE_CLEAR:
			return "CLEAR";
	}
	return NULL;
}

static void
pyrate_desc(StringInfo buf, XLogReaderState *record)
{
	Parsed		p;

	if (!parse(record, &p))
	{
		appendStringInfoString(buf, "malformed");
		return;
	}
	appendStringInfo(buf, "db %u", p.dbid);
	if (p.kind == XLOG_PYRATE_CLEAR)
	{
		appendStringInfo(buf, " partition %d", p.partition);
		return;
	}
	appendStringInfo(buf, " bucket \"%s\"", p.name);
	if (p.kind == XLOG_PYRATE_PUT)
		appendStringInfo(buf, " ts " INT64_FORMAT " weight " INT64_FORMAT " group %u slots %d",
						 p.ts, p.weight, p.group, p.slots);
	else if (p.kind == XLOG_PYRATE_LEAK || p.kind == XLOG_PYRATE_RECLAIM)
		appendStringInfo(buf, " before " INT64_FORMAT, p.ts);
}

static void
pyrate_redo(XLogReaderState *record)
{
	Parsed		p;

	if (!parse(record, &p))
		elog(PANIC, "pyrate: malformed WAL record at %X/%X",
			 LSN_FORMAT_ARGS(record->ReadRecPtr));
	if (pyrate_shared == NULL)
		elog(PANIC, "pyrate: WAL record at %X/%X needs the memory engine, which has no shared memory",
			 LSN_FORMAT_ARGS(record->ReadRecPtr));
	if (p.kind == XLOG_PYRATE_PUT)
		replay->put(p.dbid, p.name, p.group, p.ts, p.weight, p.slots, p.rates, p.nrates,
					record->EndRecPtr);
	else if (p.kind == XLOG_PYRATE_CLEAR)
		replay->clear(p.dbid, p.partition, record->EndRecPtr);
	else
		replay->change(p.kind, p.dbid, p.name, p.ts, record->EndRecPtr);
}

/* ---- recovery: the records between the last save and the redo pointer ---- */

/*
 * The saved buckets hold every change logged before replay_from (the saver
 * read it before saving).  Recovery replays from the last checkpoint's redo
 * pointer, which a checkpoint may have moved past replay_from before the
 * saver could save again: the records in between are read here, from
 * pg_wal, before the redo loop (the saver's replication slot keeps that WAL).
 * The redo loop then skips what this applied, by the partitions' lsns.
 */
typedef struct PreRead
{
	int			fd;
	XLogSegNo	segno;
	TimeLineID	tli;			/* the newest timeline a segment may be of */
} PreRead;

/* The segment's file, of the newest timeline at most pr->tli that has it. */
static int
open_segment(PreRead *pr, XLogSegNo segno)
{
	TimeLineID	tli;

	for (tli = pr->tli; tli >= 1; tli--)
	{
		char		path[MAXPGPATH];
		int			fd;

		XLogFilePath(path, tli, segno, wal_segment_size);
		fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
		if (fd >= 0)
			return fd;
	}
	return -1;
}

static int
pre_read_page(XLogReaderState *state, XLogRecPtr page, int reqLen, XLogRecPtr target, char *buf)
{
	PreRead    *pr = state->private_data;
	XLogSegNo	segno;

	XLByteToSeg(page, segno, wal_segment_size);
	if (pr->fd < 0 || pr->segno != segno)
	{
		if (pr->fd >= 0)
			close(pr->fd);
		pr->segno = segno;
		pr->fd = open_segment(pr, segno);
		if (pr->fd < 0)
			return -1;
	}
	if (pg_pread(pr->fd, buf, XLOG_BLCKSZ, XLogSegmentOffset(page, wal_segment_size)) != XLOG_BLCKSZ)
		return -1;
	return XLOG_BLCKSZ;
}

static void
pre_replay(void)
{
	TimeLineID	tli;
	XLogRecPtr	redo = GetXLogReplayRecPtr(&tli);	/* before the first record */
	XLogRecPtr	from = pyrate_shared ? pyrate_shared->replay_from : InvalidXLogRecPtr;
	PreRead		pr = {-1, 0, tli};
	XLogReaderState *reader;
	XLogRecPtr	first;
	XLogRecPtr	reached;
	int64		applied = 0;
	char	   *errormsg = NULL;

	if (XLogRecPtrIsInvalid(from) || from >= redo)
		return;
	reader = XLogReaderAllocate(wal_segment_size, NULL, XL_ROUTINE(.page_read = pre_read_page), &pr);
	if (reader == NULL)
	{
		/* (recovery goes on: what this would have read is missed, and said) */
		ereport(WARNING,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pyrate: durable memory buckets may miss changes logged from %X/%X to %X/%X",
						LSN_FORMAT_ARGS(from), LSN_FORMAT_ARGS(redo)),
				 errdetail("Out of memory while allocating a WAL reader.")));
		return;
	}
	first = XLogFindNextRecord(reader, from);
	reached = from;
	if (!XLogRecPtrIsInvalid(first))
	{
		XLogRecord *record;

		while ((record = XLogReadRecord(reader, &errormsg)) != NULL && reader->ReadRecPtr < redo)
		{
			reached = reader->ReadRecPtr;
			if (XLogRecGetRmid(reader) == PYRATE_RMGR_ID)
			{
				pyrate_redo(reader);
				applied++;
			}
		}
		if (record != NULL)
			reached = redo;
	}
	if (pr.fd >= 0)
		close(pr.fd);
	XLogReaderFree(reader);
	if (reached >= redo)
		ereport(LOG,
				(errmsg("pyrate: replayed %lld change(s) of durable memory buckets logged from %X/%X to the redo pointer %X/%X",
						(long long) applied, LSN_FORMAT_ARGS(from), LSN_FORMAT_ARGS(redo))));
	else
		ereport(WARNING,
				(errmsg("pyrate: durable memory buckets may miss changes logged from %X/%X to %X/%X",
						LSN_FORMAT_ARGS(reached), LSN_FORMAT_ARGS(redo)),
				 errdetail("The WAL from %X/%X on cannot be read%s%s.  The buckets were saved before the checkpoint recovery starts from: "
						   "a base backup carries them as saved up to about a second before it began, and a checkpoint may "
						   "complete before pyrate saves them.",
						   LSN_FORMAT_ARGS(reached), errormsg ? ": " : "", errormsg ? errormsg : ""),
				 errhint("On a primary, keep max_replication_slots above 0 and wal_level at replica or above: "
						 "the slot \"pyrate_memory\" then keeps this WAL.")));
}

/* Before the redo loop: the records the restored buckets lack, up to it. */
static void
pyrate_startup(void)
{
	pre_replay();
	if (pyrate_shared)
		pyrate_shared->pre_replayed = true;
}

static RmgrData pyrate_rmgr = {
	.rm_name = "pyrate",
	.rm_redo = pyrate_redo,
	.rm_desc = pyrate_desc,
	.rm_identify = pyrate_identify,
	.rm_startup = pyrate_startup,
};

void
pyrate_wal_init(const PyrateWalReplay *r)
{
	replay = r;
	RegisterCustomRmgr(PYRATE_RMGR_ID, &pyrate_rmgr);
}
