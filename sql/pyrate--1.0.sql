/* pyrate 1.0 — a sliding-window-log rate limiter inside PostgreSQL */

\echo Use "CREATE EXTENSION pyrate" to load this file. \quit

-- ---------------------------------------------------------------------
-- The rate type: "limit/interval", e.g. 5/s, 100/1m, 10/1500ms
-- ---------------------------------------------------------------------

CREATE TYPE @extschema@.pyrate_rate;

CREATE FUNCTION @extschema@.pyrate_rate_in(cstring) RETURNS @extschema@.pyrate_rate
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_out(@extschema@.pyrate_rate) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_recv(internal) RETURNS @extschema@.pyrate_rate
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_send(@extschema@.pyrate_rate) RETURNS bytea
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE @extschema@.pyrate_rate (
	INPUT = @extschema@.pyrate_rate_in,
	OUTPUT = @extschema@.pyrate_rate_out,
	RECEIVE = @extschema@.pyrate_rate_recv,
	SEND = @extschema@.pyrate_rate_send,
	INTERNALLENGTH = 16,
	ALIGNMENT = double
);
COMMENT ON TYPE @extschema@.pyrate_rate IS 'limit units per interval, written limit/interval as in 5/s or 10/1500ms';

CREATE FUNCTION @extschema@.pyrate_rate("limit" integer, "interval" bigint) RETURNS @extschema@.pyrate_rate
	AS 'MODULE_PATHNAME', 'pyrate_rate_make' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_rate(integer, bigint) IS 'a rate of limit units per interval milliseconds';
CREATE FUNCTION @extschema@.pyrate_rate("limit" integer, "interval" interval) RETURNS @extschema@.pyrate_rate
	AS 'MODULE_PATHNAME', 'pyrate_rate_make_interval' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_rate(integer, interval) IS 'a rate of limit units per interval';
CREATE FUNCTION @extschema@.pyrate_rate_limit(@extschema@.pyrate_rate) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_interval(@extschema@.pyrate_rate) RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_eq(@extschema@.pyrate_rate, @extschema@.pyrate_rate) RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.pyrate_rate_ne(@extschema@.pyrate_rate, @extschema@.pyrate_rate) RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.pyrate_rate, RIGHTARG = @extschema@.pyrate_rate,
	FUNCTION = @extschema@.pyrate_rate_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.pyrate_rate, RIGHTARG = @extschema@.pyrate_rate,
	FUNCTION = @extschema@.pyrate_rate_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel
);

CREATE FUNCTION @extschema@.pyrate_duration(name text) RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_duration(text) IS 'milliseconds in a SECOND, MINUTE, HOUR, DAY or WEEK';
CREATE FUNCTION @extschema@.pyrate_duration_readable(ms bigint) RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_duration_readable(bigint) IS 'milliseconds as 1.5s, 2.0h or 500ms';
CREATE FUNCTION @extschema@.pyrate_validate_rates(rates @extschema@.pyrate_rate[]) RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_validate_rates(@extschema@.pyrate_rate[]) IS 'whether a rate list obeys the rules: sorted by interval, intervals and limits strictly increase, limit/interval never increases';

-- ---------------------------------------------------------------------
-- Results
-- ---------------------------------------------------------------------

CREATE TYPE @extschema@.pyrate_item AS (name text, weight integer, ts bigint);
CREATE TYPE @extschema@.pyrate_decision AS (
	acquired boolean,
	failing_rate @extschema@.pyrate_rate,
	retry_after_ms bigint,
	remaining bigint
);

-- ---------------------------------------------------------------------
-- Storage: definitions (user configuration, dumped), buckets and items
-- ---------------------------------------------------------------------

CREATE TABLE @extschema@.pyrate_definition_data (
	pattern text COLLATE "C" PRIMARY KEY,
	rates @extschema@.pyrate_rate[] NOT NULL
		CHECK (@extschema@.pyrate_validate_rates(rates)),
	storage text NOT NULL CHECK (storage IN ('table', 'memory')),
	dry_run boolean NOT NULL DEFAULT false,
	created timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pyrate_definition_data', '');

CREATE SEQUENCE @extschema@.pyrate_bucket_id_seq;

CREATE TABLE @extschema@.pyrate_bucket_data (
	id bigint PRIMARY KEY,
	name text COLLATE "C" NOT NULL UNIQUE,
	created timestamptz NOT NULL
);

CREATE TABLE @extschema@.pyrate_item_data (
	bucket bigint NOT NULL,
	cum bigint NOT NULL,
	ts bigint NOT NULL,
	weight integer NOT NULL,
	PRIMARY KEY (bucket, cum)
);
-- ties on ts are ordered by cum: the first item at or after a time is the
-- oldest of them, whichever heap page it landed on
CREATE INDEX pyrate_item_data_ts ON @extschema@.pyrate_item_data (bucket, ts, cum);

REVOKE ALL ON @extschema@.pyrate_definition_data, @extschema@.pyrate_bucket_data,
	@extschema@.pyrate_item_data, @extschema@.pyrate_bucket_id_seq FROM PUBLIC;

CREATE FUNCTION @extschema@.pyrate_definitions_changed() RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
CREATE TRIGGER pyrate_definitions_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.pyrate_definition_data
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pyrate_definitions_changed();

CREATE VIEW @extschema@.pyrate_definitions AS
	SELECT pattern, rates, storage, dry_run, created
	FROM @extschema@.pyrate_definition_data;
COMMENT ON VIEW @extschema@.pyrate_definitions IS 'rate limits by bucket name or pattern';

-- ---------------------------------------------------------------------
-- Definitions
-- ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.pyrate_define(
	pattern text,
	rates @extschema@.pyrate_rate[],
	storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
	dry_run boolean DEFAULT false)
RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean) IS 'define (or redefine) the rates of a bucket name or a pattern with *';

CREATE FUNCTION @extschema@.pyrate_undefine(pattern text) RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------
-- Buckets (AbstractBucket)
-- ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.pyrate_now() RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_now() IS 'the server clock in milliseconds since the Unix epoch';

CREATE FUNCTION @extschema@.pyrate_put(name text, weight integer DEFAULT 1, "at" bigint DEFAULT NULL)
RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_waiting(name text, weight integer DEFAULT 1, "at" bigint DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_count(name text) RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_peek(name text, index integer) RETURNS @extschema@.pyrate_item
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_leak(name text, "at" bigint DEFAULT NULL) RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_leak() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pyrate_leak_all' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_flush(name text) RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_dispose(name text) RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.pyrate_buckets(
	OUT name text, OUT pattern text, OUT storage text,
	OUT rates @extschema@.pyrate_rate[], OUT count bigint)
RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------
-- The Limiter
-- ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.pyrate_try_acquire(
	name text DEFAULT 'pyrate',
	weight integer DEFAULT 1,
	blocking boolean DEFAULT true,
	-- a literal, so the default is a constant, not a cast the planner evaluates per call
	timeout double precision DEFAULT '-1')
RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.pyrate_try_acquire(text, integer, boolean, double precision) IS 'Limiter.try_acquire: take weight units from a bucket, by default waiting as long as it takes';

CREATE FUNCTION @extschema@.pyrate_acquire(name text, weight integer DEFAULT 1, "at" bigint DEFAULT NULL)
RETURNS @extschema@.pyrate_decision
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.pyrate_acquire(text, integer, bigint) IS 'take weight units if every rate has room, never waiting; says which rate failed, how long until every rate admits, and what remains';

CREATE FUNCTION @extschema@.pyrate_require(name text, weight integer DEFAULT 1) RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.pyrate_require(text, integer) IS 'take weight units or raise SQLSTATE PT429 (HTTP 429 through PostgREST)';

CREATE FUNCTION @extschema@.pyrate_throttle() RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.pyrate_throttle() IS 'BEFORE ... FOR EACH ROW trigger: pyrate_throttle(prefix [, key_column [, weight or weight_column [, on_limit error|skip|wait]]])';

-- ---------------------------------------------------------------------
-- Statistics (shared memory: needs shared_preload_libraries = 'pyrate')
-- ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.pyrate_stats(
	OUT pattern text, OUT acquired bigint, OUT rejected bigint, OUT would_reject bigint,
	OUT waited bigint, OUT wait_ms bigint, OUT stats_reset timestamptz)
RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE VIEW @extschema@.pyrate_stats AS SELECT * FROM @extschema@.pyrate_stats();
COMMENT ON VIEW @extschema@.pyrate_stats IS 'per definition: acquired, rejected, would-reject (dry run), waited and total wait (ms); pattern NULL counts definitions beyond pyrate.max_stats';
CREATE FUNCTION @extschema@.pyrate_stats_reset() RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------
-- Privileges: acquiring is for everyone; configuring is for the owner
-- ---------------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean),
	@extschema@.pyrate_undefine(text),
	@extschema@.pyrate_leak(text, bigint),
	@extschema@.pyrate_leak(),
	@extschema@.pyrate_flush(text),
	@extschema@.pyrate_dispose(text),
	@extschema@.pyrate_buckets(),
	@extschema@.pyrate_definitions_changed(),
	@extschema@.pyrate_stats_reset()
	FROM PUBLIC;
GRANT SELECT ON @extschema@.pyrate_definitions, @extschema@.pyrate_stats TO PUBLIC;

-- ---------------------------------------------------------------------
-- The memory engine and the background worker (shared_preload_libraries)
-- ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.pyrate_memory_status(
	OUT available boolean, OUT size_bytes bigint, OUT used_bytes bigint,
	OUT buckets bigint, OUT items bigint, OUT evicted bigint, OUT full_errors bigint)
RETURNS record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_memory_status() IS 'the memory engine''s shared memory, over every database: its size, the bytes its buckets use, buckets, items stored, buckets evicted, acquires refused because it was full';

CREATE FUNCTION @extschema@.pyrate_worker_status(
	OUT pid integer, OUT database text, OUT state text, OUT leak_interval_ms integer,
	OUT started timestamptz, OUT last_leak timestamptz, OUT last_leak_ms double precision,
	OUT last_memory_units bigint, OUT last_table_units bigint, OUT total_units bigint,
	OUT leak_runs bigint, OUT last_error_at timestamptz, OUT last_error text)
RETURNS record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_worker_status() IS 'what the background worker (pyrate leaker) is doing and last did';

REVOKE ALL ON FUNCTION @extschema@.pyrate_memory_status(),
	@extschema@.pyrate_worker_status()
	FROM PUBLIC;
