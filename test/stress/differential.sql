-- Differential check: the table engine (index probes, per-backend window
-- hints, tombstones) against the memory engine (the plain log), fed the same
-- random operations with timestamps that mostly advance and sometimes step
-- back.  Prints the number of disagreements (0 is a pass) and the first few.
SELECT pyrate_define('diff:table:*', '{3/40,10/400,25/4000}', 'table');
SELECT pyrate_define('diff:memory:*', '{3/40,10/400,25/4000}', 'memory');

CREATE FUNCTION pg_temp.differential(n int, seed float8) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	at bigint := 1000000;
	bad int := 0;
	k text;
	w int;
	r float8;
	a record;
	b record;
	x text;
	y text;
BEGIN
	PERFORM setseed(seed);
	FOR i IN 1 .. n LOOP
		r := random();
		at := at + CASE WHEN r < 0.05 THEN -(random() * 2000)::int ELSE (random() * 30)::int END;
		at := greatest(at, 0);
		k := (random() * 3)::int::text;
		w := (random() * 4)::int;
		r := random();
		IF r < 0.55 THEN
			x := pyrate_put('diff:table:' || k, w, at)::text;
			y := pyrate_put('diff:memory:' || k, w, at)::text;
		ELSIF r < 0.75 THEN
			SELECT * INTO a FROM pyrate_acquire('diff:table:' || k, w, at);
			SELECT * INTO b FROM pyrate_acquire('diff:memory:' || k, w, at);
			x := a::text;
			y := b::text;
		ELSIF r < 0.83 THEN
			x := pyrate_waiting('diff:table:' || k, w, at)::text;
			y := pyrate_waiting('diff:memory:' || k, w, at)::text;
		ELSIF r < 0.91 THEN
			w := (random() * 30)::int;
			x := coalesce(pyrate_peek('diff:table:' || k, w)::text, 'null');
			y := coalesce(pyrate_peek('diff:memory:' || k, w)::text, 'null');
			x := replace(x, 'diff:table:', '');
			y := replace(y, 'diff:memory:', '');
		ELSIF r < 0.97 THEN
			x := pyrate_leak('diff:table:' || k, at)::text || '/' || pyrate_count('diff:table:' || k);
			y := pyrate_leak('diff:memory:' || k, at)::text || '/' || pyrate_count('diff:memory:' || k);
		ELSE
			PERFORM pyrate_flush('diff:table:' || k), pyrate_flush('diff:memory:' || k);
			x := '';
			y := '';
		END IF;
		IF x IS DISTINCT FROM y THEN
			bad := bad + 1;
			IF bad <= 5 THEN
				RAISE NOTICE 'op % (at %, key %, r %): table % memory %', i, at, k, round(r::numeric, 2), x, y;
			END IF;
		END IF;
	END LOOP;
	RETURN bad;
END $$;

SELECT pg_temp.differential(20000, 0.42) AS disagreements;
