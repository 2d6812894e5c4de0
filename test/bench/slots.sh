#!/usr/bin/env bash
# Bounded storage (slots): one busy key under '{20/1s,600/1m,20000/1h}',
# about 40 attempts a second for four simulated hours (explicit timestamps,
# so the run takes a minute or two), replayed on each engine exact and with
# slots => 10 and 100, side by side, each put its own transaction.  Prints,
# for each: the entries the bucket stored (most, sampled every 1000 puts,
# and at the end), the units admitted against the exact bucket's (over the
# run, and over its last two hours, once the first hour's burst has passed:
# the bound n/(n+1) is of the steady rate), and the time per put.  Figures,
# not pass/fail; the bounds themselves are tested in sql/slots.sql, the
# core's unit tests and the stress suite.
#
#   bash test/bench/slots.sh        (as root; PYRATE_BENCH_SLOTS_PUTS=576000)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PUTS=${PYRATE_BENCH_SLOTS_PUTS:-576000}
RATES='{20/1s,600/1m,20000/1h}'
PORT=57341
bench_start slots $PORT "pyrate.leak_interval = 0" "synchronous_commit = off"
sql -c "CREATE EXTENSION pyrate" \
	-c "CREATE TABLE arrivals AS
		SELECT g, (1000000 + sum((g * 7919 + g * g * 31) % 51) OVER (ORDER BY g))::bigint AS ts
		FROM generate_series(1::bigint, $PUTS) g" \
	-c "CREATE TABLE runs (bucket text, admitted bigint, steady bigint, most bigint, last bigint, us_per_put numeric)" \
	-c "CREATE PROCEDURE replay(bucket text) LANGUAGE plpgsql AS \$\$
		DECLARE
			a record;
			n bigint := 0;
			steady bigint := 0;
			steady_from bigint := (SELECT max(ts) - 7200000 FROM arrivals);
			most bigint := 0;
			e bigint;
			spent interval := 0;
			t0 timestamptz;
		BEGIN
			FOR a IN SELECT * FROM arrivals ORDER BY g LOOP
				t0 := clock_timestamp();
				IF pyrate_put(bucket, 1, a.ts) THEN
					n := n + 1;
					steady := steady + (a.ts >= steady_from)::int;
				END IF;
				-- each put its own transaction, as a client's would be
				COMMIT;
				spent := spent + (clock_timestamp() - t0);
				IF a.g % 1000 = 0 THEN
					SELECT b.entries INTO e FROM pyrate_buckets() b WHERE b.name = bucket;
					most := greatest(most, e);
				END IF;
			END LOOP;
			SELECT b.entries INTO e FROM pyrate_buckets() b WHERE b.name = bucket;
			INSERT INTO runs VALUES (bucket, n, steady, greatest(most, e), e,
				round((extract(epoch FROM spent) * 1e6 / $PUTS)::numeric, 1));
		END
		\$\$" >/dev/null
echo "== load: $(uptime)"
echo "== $PUTS attempts over $(sql -c "SELECT round((max(ts) - min(ts)) / 3600000.0, 2) FROM arrivals") simulated hours, rates $RATES"
for engine in table memory; do
	for slots in NULL 10 100; do
		sql -c "SELECT FROM pyrate_define('$engine:$slots', '$RATES', '$engine', slots => $slots)" \
			-c "CALL replay('$engine:$slots')" >/dev/null
	done
done
sql -c "SELECT pyrate_dispose('memory:' || s) FROM unnest(ARRAY['NULL', '10', '100']) s" >/dev/null
printf '%-12s %9s %9s %12s %12s %8s %8s\n' bucket admitted 'of exact' 'last 2 h' 'most entries' 'at end' 'us/put'
sql -F ' ' -c "SELECT r.bucket, r.admitted, round(r.admitted::numeric / x.admitted, 3),
		round(r.steady::numeric / x.steady, 3), r.most, r.last, r.us_per_put
	FROM runs r JOIN runs x ON x.bucket = split_part(r.bucket, ':', 1) || ':NULL' ORDER BY r.bucket" |
	while read -r bucket admitted frac steady most last us; do
		printf '%-12s %9s %9s %12s %12s %8s %8s\n' "$bucket" "$admitted" "$frac" "$steady" "$most" "$last" "$us"
	done
sql -F '|' -c "SELECT r.bucket, r.most, x.most, round(r.most::numeric / x.most, 4), r.steady::numeric / x.steady,
		r.us_per_put, x.us_per_put
	FROM runs r JOIN runs x ON x.bucket = split_part(r.bucket, ':', 1) || ':NULL'
	WHERE r.bucket <> x.bucket ORDER BY r.bucket" |
	while IFS='|' read -r bucket most xmost ratio frac us xus; do
		n=${bucket#*:}
		echo "RESULT|$bucket: most entries stored, slots => $n vs exact ($RATES, 40 attempts/s)|$most|$xmost|$ratio|<= $((20 + 2 * (1 + 2 * (n + 1)) + 1)) (bounded)"
		echo "RESULT|$bucket: units admitted in the last two hours vs exact|-|-|$(awk -v f="$frac" 'BEGIN { printf "%.3f", f }')|>= $n/$((n + 1))"
		echo "RESULT|$bucket: time per put, slots => $n vs exact (us)|$us|$xus|$(awk -v a="$us" -v b="$xus" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')|reported"
	done
