/*
 * test_failover.c — the Postgres bucket through a failover: a primary and a
 * streaming standby behind one multi-host connection string with
 * target_session_attrs=read-write.
 *
 *   test_failover MULTI-DSN STANDBY-DSN STOP-PRIMARY-COMMAND PROMOTE-COMMAND
 *
 * MULTI-DSN names both servers (host=SOCK1,SOCK2 port=P1,P2
 * target_session_attrs=read-write ...); STANDBY-DSN the standby alone.
 * STOP-PRIMARY-COMMAND stops the primary (immediate); PROMOTE-COMMAND
 * promotes the standby and returns once it takes writes.  Both run with
 * system().
 *
 * Limiters of both fail modes over both protocols take permits from one
 * table bucket, lose their primary (fail-open admits, fail-closed refuses,
 * each within its deadline), and after the promotion the same objects take
 * permits again from the new primary, counting on from what replicated.
 */
#include "tap.h"

#include <poll.h>
#include <unistd.h>

#define KEY "failover:k"
#define LIMIT 20
#define TIMEOUT_MS 3000
/* what a call may take past its deadline: the return, under valgrind */
#define SLACK_MS 500
#define BEFORE 2				/* admits per limiter before the failover */
#define NLIM 4

static const pyrate_rate rates[1] = {{LIMIT, PYRATE_HOUR}};

typedef struct lim
{
	pyrate_limiter *l;
	char		what[64];
	pyrate_fail_mode mode;
	int			admitted;		/* after the promotion */
} lim;

static pyrate_bucket *
open_pg(const char *conninfo, const char *name, pyrate_pg_protocol protocol, pyrate_error *e)
{
	pyrate_pg_options o = {conninfo, name, NULL, TIMEOUT_MS, protocol};

	return pyrate_pg_bucket_new(&o, e);
}

/* a limiter over one Postgres bucket, no leaker (the extension leaks) */
static pyrate_limiter *
limiter_new(const char *conninfo, pyrate_pg_protocol protocol, pyrate_fail_mode mode, pyrate_error *e)
{
	pyrate_limiter_options lo = {-1, mode};
	pyrate_bucket *b = open_pg(conninfo, NULL, protocol, e);
	pyrate_factory *f;
	pyrate_limiter *l;

	if (!b)
		return NULL;
	if (!(f = pyrate_single_bucket_factory_new(b, false, NULL, e)))
	{
		pyrate_close(b);
		return NULL;
	}
	if (!(l = pyrate_limiter_new(f, &lo, e)))
		pyrate_factory_free(f);
	return l;
}

/* one async acquire, driven by poll() on the bucket's socket of the moment */
static int
async_acquire(pyrate_bucket *b, pyrate_decision *d, pyrate_error *e)
{
	pyrate_pg_poll state;
	int64_t		deadline = tap_ms() + TIMEOUT_MS;
	int			rc = pyrate_pg_acquire_start(b, KEY, 1, e);

	if (rc != PYRATE_OK)
		return rc;
	for (;;)
	{
		struct pollfd p = {pyrate_pg_socket(b), 0, 0};
		int64_t		left = deadline - tap_ms();

		if ((rc = pyrate_pg_acquire_poll(b, &state, e)) != PYRATE_OK)
			return rc;
		if (state == PYRATE_PG_DONE)
			break;
		p.events = state == PYRATE_PG_WANT_READ ? POLLIN : POLLOUT;
		if (left <= 0 || poll(&p, 1, (int) left) != 1)
		{
			snprintf(e->message, sizeof(e->message), "no answer by the deadline");
			return PYRATE_ETIMEOUT;
		}
	}
	return pyrate_pg_acquire_finish(b, d, e);
}

static int64_t
count_of(pyrate_bucket *b, pyrate_error *e)
{
	int64_t		n = -1;

	if (pyrate_pg_count(b, KEY, &n, e) != PYRATE_OK)
		return -1;
	return n;
}

int
main(int argc, char **argv)
{
	static const char *const mode_names[2] = {"fail-closed", "fail-open"};
	static const char *const protocol_names[2] = {"fast path", "unnamed statements"};
	pyrate_error e = {0};
	lim		lims[NLIM];
	pyrate_bucket *admin;
	pyrate_bucket *standby;
	pyrate_bucket *async;
	pyrate_bucket *bound;
	pyrate_decision d = {0};
	pyrate_acquire_info info;
	const char *multi;
	char		why[256] = "";
	int64_t		replicated = -1;
	int64_t		start;
	int64_t		took;
	int64_t		n;
	int			admitted = 0;
	int			i;
	int			round;
	bool		ok;
	bool		full = false;

	if (argc != 5)
	{
		fprintf(stderr, "usage: test_failover MULTI-DSN STANDBY-DSN STOP-PRIMARY-COMMAND PROMOTE-COMMAND\n");
		return 2;
	}
	multi = argv[1];
	admin = open_pg(multi, NULL, PYRATE_PG_UNNAMED, &e);
	standby = open_pg(argv[2], NULL, PYRATE_PG_UNNAMED, &e);
	async = open_pg(multi, NULL, PYRATE_PG_FASTPATH, &e);
	if (!admin || !standby || !async ||
		pyrate_pg_define(admin, KEY, rates, 1, "table", false, &e) != PYRATE_OK)
	{
		printf("not ok - cannot reach the primary through \"%s\": %s\n0 passed, 1 failed\n", multi, e.message);
		return 1;
	}
	pyrate_pg_dispose(admin, KEY, NULL, NULL);
	for (i = 0; i < NLIM; i++)
	{
		pyrate_pg_protocol protocol = i / 2 ? PYRATE_PG_UNNAMED : PYRATE_PG_FASTPATH;

		lims[i].mode = i % 2 ? PYRATE_FAIL_OPEN : PYRATE_FAIL_CLOSED;
		lims[i].admitted = 0;
		snprintf(lims[i].what, sizeof(lims[i].what), "%s (%s)", mode_names[lims[i].mode], protocol_names[protocol]);
		if (!(lims[i].l = limiter_new(multi, protocol, lims[i].mode, &e)))
		{
			printf("not ok - a limiter: %s\n0 passed, 1 failed\n", e.message);
			return 1;
		}
	}

	/* ---- on the primary ---- */
	for (i = 0; i < NLIM; i++)
	{
		int			got = 0;
		int			k;

		for (k = 0; k < BEFORE; k++)
			if (pyrate_try_acquire(lims[i].l, KEY, 1, false, -1, &ok, &info, &e) == PYRATE_OK &&
				ok && info.outcome == PYRATE_ACQUIRED)
				got++;
		CHECK(got == BEFORE, "%s: %d of %d admitted by the primary", lims[i].what, got, BEFORE);
	}
	CHECK((n = count_of(admin, &e)) == NLIM * BEFORE, "the primary holds %" PRId64 " units", n);
	start = tap_ms();
	while (tap_ms() - start < 30000 && (replicated = count_of(standby, &e)) != NLIM * BEFORE)
		usleep(50000);
	CHECK(replicated == NLIM * BEFORE, "the standby has them too (%" PRId64 ", read there)", replicated);

	/* ---- no primary ---- */
	CHECK(system(argv[3]) == 0, "the primary is stopped (immediate)");
	for (round = 0; round < 2; round++)
	{
		for (i = 0; i < NLIM; i++)
		{
			bool		open = lims[i].mode == PYRATE_FAIL_OPEN;
			int			rc;

			start = tap_ms();
			/* the second round blocks with no timeout: the fail mode still answers at once */
			rc = pyrate_try_acquire(lims[i].l, KEY, 1, round == 1, -1, &ok, &info, &e);
			took = tap_ms() - start;
			CHECK(rc == PYRATE_OK && ok == open &&
				  info.outcome == (open ? PYRATE_FAILED_OPEN : PYRATE_FAILED_CLOSED) &&
				  (info.backend_error.code == PYRATE_EBACKEND || info.backend_error.code == PYRATE_ETIMEOUT),
				  "%s, %s, no primary: %s (%s)", lims[i].what, round ? "blocking" : "non-blocking",
				  open ? "admitted" : "refused", rc == PYRATE_OK ? info.backend_error.message : e.message);
			CHECK(took <= TIMEOUT_MS + SLACK_MS, "... within the %d ms deadline (%" PRId64 " ms)", TIMEOUT_MS, took);
		}
	}
	start = tap_ms();
	i = async_acquire(async, &d, &e);
	took = tap_ms() - start;
	CHECK((i == PYRATE_EBACKEND || i == PYRATE_ETIMEOUT) && took <= TIMEOUT_MS + SLACK_MS,
		  "async acquire, no primary: %s in %" PRId64 " ms (%s)", pyrate_code_name(i), took, e.message);
	/* a call that finds the admin bucket's old connection gone, then one that connects */
	pyrate_pg_now(admin, &n, NULL);
	start = tap_ms();
	i = pyrate_pg_count(admin, KEY, &n, &e);
	took = tap_ms() - start;
	/*
	 * libpq's reason for passing over the standby ends the detail (or the
	 * message), unless long socket paths had the detail cut
	 */
	CHECK(i == PYRATE_EBACKEND && took <= TIMEOUT_MS + SLACK_MS &&
		  (strstr(e.message, "read-only") || strstr(e.detail, "read-only") ||
		   strlen(e.detail) >= PYRATE_MSG_LEN - 5),
		  "count, no primary: %s in %" PRId64 " ms, the standby tried and passed over (%s%s%s)",
		  pyrate_code_name(i), took, e.message, e.detail[0] ? "; " : "", e.detail);
	CHECK(count_of(standby, &e) == NLIM * BEFORE,
		  "the standby still holds %d units: the fail-open admits stored nothing", NLIM * BEFORE);

	/* ---- the standby promoted: the same objects go on ---- */
	CHECK(system(argv[4]) == 0, "the standby is promoted");
	CHECK((n = count_of(admin, &e)) == replicated,
		  "through the same string the new primary holds what replicated (%" PRId64 " units)", n);
	for (i = 0; i < NLIM; i++)
	{
		start = tap_ms();
		CHECK(pyrate_try_acquire(lims[i].l, KEY, 1, false, -1, &ok, &info, &e) == PYRATE_OK &&
			  ok && info.outcome == PYRATE_ACQUIRED,
			  "%s: the same limiter takes a permit from the new primary (%s, %" PRId64 " ms)",
			  lims[i].what, info.outcome == PYRATE_ACQUIRED ? "admitted" : info.backend_error.message,
			  tap_ms() - start);
		if (ok && info.outcome == PYRATE_ACQUIRED)
		{
			lims[i].admitted++;
			admitted++;
		}
	}
	d.acquired = false;
	CHECK(async_acquire(async, &d, &e) == PYRATE_OK && d.acquired,
		  "the async acquire reconnects to the new primary: admitted");
	if (d.acquired)
		admitted++;
	/* round robin until the window is full */
	for (round = 0; !full && round < LIMIT; round++)
	{
		for (i = 0; i < NLIM && !full; i++)
		{
			if (pyrate_try_acquire(lims[i].l, KEY, 1, false, -1, &ok, &info, &e) != PYRATE_OK)
			{
				CHECK(false, "%s: %s", lims[i].what, e.message);
				full = true;
			}
			else if (ok && info.outcome == PYRATE_ACQUIRED)
			{
				lims[i].admitted++;
				admitted++;
			}
			else
			{
				full = true;
				CHECK(info.outcome == PYRATE_REJECTED && info.decision.failing_rate.limit == LIMIT &&
					  info.decision.failing_rate.interval == PYRATE_HOUR && info.decision.retry_after_ms > 0,
					  "%s: the full window rejects, by %d/1h, retry after %" PRId64 " ms (%s)", lims[i].what,
					  LIMIT, info.decision.retry_after_ms,
					  info.outcome == PYRATE_REJECTED ? "rejected" : info.backend_error.message);
			}
		}
	}
	CHECK(replicated >= 0 && admitted == LIMIT - replicated,
		  "after the promotion %d admitted: the window counts on from the %" PRId64 " units that replicated",
		  admitted, replicated);
	for (i = 0; i < NLIM; i++)
		CHECK(lims[i].admitted > 0, "%s took %d permits from the new primary", lims[i].what, lims[i].admitted);
	CHECK((n = count_of(admin, &e)) == LIMIT, "the new primary holds %d units (%" PRId64 ")", LIMIT, n);
	bound = open_pg(multi, KEY, PYRATE_PG_UNNAMED, &e);
	CHECK(bound && tap_windows_ok(bound, rates, 1, &n, why, sizeof(why)),
		  "no window of the stored items holds more than %d (%" PRId64 " units) %s", LIMIT, n, why);

	pyrate_pg_dispose(admin, KEY, NULL, NULL);
	if (bound)
		pyrate_close(bound);
	for (i = 0; i < NLIM; i++)
		pyrate_limiter_free(lims[i].l);
	pyrate_close(async);
	pyrate_close(standby);
	pyrate_close(admin);
	return tap_end();
}
