/*
 * pyrate.h — declarations shared by the extension's modules.
 */
#ifndef PYRATE_H
#define PYRATE_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/array.h"
#include "utils/guc.h"

#include "compat.h"
#include "pyrate_core.h"

/* Longest bucket name or pattern, in bytes. */
#define PYRATE_MAX_NAME 1024

/* ---- GUCs (pyrate.c) ------------------------------------------------ */
extern int	pyrate_buffer_ms;
extern int	pyrate_leak_interval;
extern char *pyrate_database;
extern int	pyrate_default_storage;

/* ---- the pyrate_rate type (rate_type.c) ----------------------------- */
typedef pyr_rate PyrateRate;	/* the on-disk form: 16 bytes, double aligned */

#define DatumGetPyrateRate(d)	((PyrateRate *) DatumGetPointer(d))
#define PyrateRateGetDatum(r)	PointerGetDatum(r)

/* Unpack a pyrate_rate[] into rates (at most PYR_MAX_RATES), sorted and
 * validated; errors name the rule that failed. */
int			pyrate_rates_from_array(ArrayType *arr, pyr_rate *rates);
ArrayType  *pyrate_rates_to_array(Oid rate_type, const pyr_rate *rates, int n);
char	   *pyrate_rates_text(const pyr_rate *rates, int n);

/* ---- storage engines (engine.c) ------------------------------------- */
typedef enum PyrateStorage
{
	PYRATE_STORAGE_TABLE = 0,
	PYRATE_STORAGE_MEMORY
} PyrateStorage;

extern const struct config_enum_entry pyrate_storage_options[];
const char *pyrate_storage_name(PyrateStorage s);

/* ---- routing (routing.c) -------------------------------------------- */
typedef struct PyrateDefinition
{
	char	   *pattern;
	pyr_rate	rates[PYR_MAX_RATES];
	int			nrates;
	PyrateStorage storage;
	bool		dry_run;
} PyrateDefinition;

/* The definition a bucket name routes to; ERROR (42704) when none. */
const PyrateDefinition *pyrate_route(Oid nsp, const char *name);
/* Same, NULL when none. */
const PyrateDefinition *pyrate_route_or_null(Oid nsp, const char *name);
bool		pyrate_pattern_match(const char *pattern, const char *name);
void		pyrate_routing_init(void);
void		pyrate_definitions_invalidate(Oid nsp);

/* ---- helpers (limiter.c) -------------------------------------------- */
/* The schema holding the extension's objects, from the calling function. */
Oid			pyrate_namespace(FunctionCallInfo fcinfo);
Oid			pyrate_relid(Oid nsp, const char *relname);
int64		pyrate_now_ms(void);
void		pyrate_check_name(const char *what, const char *name);

#endif							/* PYRATE_H */
