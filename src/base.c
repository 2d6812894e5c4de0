/*
 * base.c — leaf helpers: bucket names, the clock, the extension's schema.
 */
#include "base.h"

#include "utils/lsyscache.h"
#include "utils/timestamp.h"

Oid
pyrate_namespace(FunctionCallInfo fcinfo)
{
	return get_func_namespace(fcinfo->flinfo->fn_oid);
}

int64
pyrate_now_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

void
pyrate_check_name(const char *what, const char *name)
{
	size_t		len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a %s cannot be empty", what)));
	if (len > PYRATE_MAX_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long", what),
				 errdetail("It is %zu bytes; pyrate takes at most %d.", len, PYRATE_MAX_NAME),
				 errhint("Hash long keys, as in 'api:' || md5(key).")));
}
