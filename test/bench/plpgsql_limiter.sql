-- The baseline a user would otherwise write: a sliding-window limiter in
-- PL/pgSQL, the obvious way (advisory lock, SUM over each window, insert).
-- Same rates as the pyrate definition it is compared with: 100/s, 100000/h.
CREATE TABLE plpgsql_items (key text NOT NULL, ts timestamptz NOT NULL, weight int NOT NULL);
CREATE INDEX ON plpgsql_items (key, ts);

CREATE FUNCTION plpgsql_acquire(k text, w int DEFAULT 1) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	now timestamptz := clock_timestamp();
	used bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext(k));
	SELECT coalesce(sum(weight), 0) INTO used
	FROM plpgsql_items WHERE key = k AND ts >= now - interval '1 second';
	IF used + w > 100 THEN
		RETURN false;
	END IF;
	SELECT coalesce(sum(weight), 0) INTO used
	FROM plpgsql_items WHERE key = k AND ts >= now - interval '1 hour';
	IF used + w > 100000 THEN
		RETURN false;
	END IF;
	INSERT INTO plpgsql_items VALUES (k, now, w);
	RETURN true;
END $$;

-- The floor: a bare single-row insert into a table with the index a limiter
-- needs.
CREATE TABLE bare_insert (key text NOT NULL, ts timestamptz NOT NULL);
CREATE INDEX ON bare_insert (key, ts);
