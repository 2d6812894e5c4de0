/*
 * rate_type.h — the pyrate_rate SQL type over the core's rates, and rate
 * lists as SQL arrays.
 */
#ifndef PYRATE_RATE_TYPE_H
#define PYRATE_RATE_TYPE_H

#include "base.h"

#include "utils/array.h"

typedef pyr_rate PyrateRate;	/* the on-disk form: 16 bytes, double aligned */

#define DatumGetPyrateRate(d)	((PyrateRate *) DatumGetPointer(d))
#define PyrateRateGetDatum(r)	PointerGetDatum(r)

/* Unpack a pyrate_rate[] into rates (at most PYR_MAX_RATES), sorted and
 * validated; errors name the rule that failed. */
int			pyrate_rates_from_array(ArrayType *arr, pyr_rate *rates);
/* Same from text: '5/s', '5/s, 1000/h', or an array literal '{5/s,1000/h}'. */
int			pyrate_rates_from_text(Oid nsp, const char *str, pyr_rate *rates);
ArrayType  *pyrate_rates_to_array(Oid rate_type, const pyr_rate *rates, int n);
/* The pyrate_rate type of the extension in schema nsp. */
Oid			pyrate_rate_type_oid(Oid nsp);
char	   *pyrate_rates_text(const pyr_rate *rates, int n);

#endif							/* PYRATE_RATE_TYPE_H */
