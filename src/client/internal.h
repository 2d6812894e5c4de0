/*
 * internal.h — what the modules of libpyrate share and users never see.
 */
#ifndef PYRATE_INTERNAL_H
#define PYRATE_INTERNAL_H

#include "pyrate.h"
#include "pyrate_core.h"

#include <pthread.h>

/* the public and the core rate are one layout, so arrays convert freely */
_Static_assert(sizeof(pyrate_rate) == sizeof(pyr_rate), "pyrate_rate layout");
_Static_assert(offsetof(pyrate_rate, interval) == offsetof(pyr_rate, interval), "pyrate_rate layout");

#define CORE_RATES(b) ((const pyr_rate *) (b)->rates)

/* fill err (when not NULL) and return code */
int			pyr_fail(pyrate_error *err, int code, const char *fmt, ...)
			__attribute__((format(printf, 3, 4)));

int64_t		pyr_monotonic_ms(void);
int64_t		pyr_realtime_ms(void);
void		pyr_sleep_ms(int64_t ms);

/* a pyr_decision (from pyr_decide) as the public decision */
void		pyr_fill_decision(const pyrate_bucket *b, const pyr_decision *src, int64_t ts,
							  pyrate_decision *d);

/* hand f a block to free when it is freed */
void		pyr_factory_own(pyrate_factory *f, void *ptr);

/* check a weight argument */
int			pyr_check_weight(int64_t weight, pyrate_error *err);

#endif							/* PYRATE_INTERNAL_H */
