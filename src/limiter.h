/*
 * limiter.h — Limiter.try_acquire: the blocking acquire loop, shared by the
 * SQL functions and the throttling trigger.
 */
#ifndef PYRATE_LIMITER_H
#define PYRATE_LIMITER_H

#include "base.h"

/* The GUC pyrate.buffer_ms: extra sleep past the computed wait. */
extern int	pyrate_buffer_ms;

typedef struct PyrateAcquireResult
{
	pyr_rate	failing_rate;	/* when rejected */
	int64		retry_after;
} PyrateAcquireResult;

/*
 * Acquire weight units of a bucket; when blocking, sleep waiting +
 * buffer_ms and retry until admitted, until deadline (a timestamp; -1:
 * none) passes, or until the weight can never fit.  false with r filled
 * when rejected.
 */
bool		pyrate_limiter_acquire(Oid nsp, const char *name, int64 weight, bool blocking,
								   int64 deadline, PyrateAcquireResult *r);

/* ERROR with SQLSTATE PT429 for a rejection; context is appended to the message. */
void		pyrate_raise_limited(const char *name, const pyr_rate *failing, int64 weight,
								 int64 retry_after, const char *context) pg_attribute_noreturn();

/* Defines pyrate.buffer_ms. */
void		pyrate_limiter_init(void);

#endif							/* PYRATE_LIMITER_H */
