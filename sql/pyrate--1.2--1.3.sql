/* pyrate 1.2 -> 1.3: bounded storage per definition (slots), a cap on a
   definition's memory buckets (max_buckets), and pyrate_buckets() reports
   the entries each bucket stores */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.3'" to load this file. \quit

-- slots => n: the smallest rate's window stays exact; older units are kept
-- in about n coarse entries per larger rate.  NULL: exact (pyrate-limiter).
ALTER TABLE @extschema@.pyrate_definition_data ADD COLUMN slots integer
	CONSTRAINT pyrate_definition_data_slots_check CHECK (slots BETWEEN 1 AND 1000);
-- max_buckets => n: at most n memory buckets created under the definition
-- exist at once; the next new name is refused (53400).  NULL: no cap.
ALTER TABLE @extschema@.pyrate_definition_data ADD COLUMN max_buckets bigint
	CONSTRAINT pyrate_definition_data_max_buckets_check
		CHECK (max_buckets > 0 AND (storage = 'memory' OR max_buckets IS NULL));
ALTER TYPE @extschema@.pyrate_definition ADD ATTRIBUTE slots integer;
ALTER TYPE @extschema@.pyrate_definition ADD ATTRIBUTE max_buckets bigint;

CREATE OR REPLACE VIEW @extschema@.pyrate_definitions AS
	SELECT pattern, rates, storage, dry_run, created, slots, max_buckets
	FROM @extschema@.pyrate_definition_data;

-- New signatures need new functions: the privileges granted on the old ones
-- are granted again on the new.
DO $pyrate$
DECLARE
	define_acl pg_catalog.aclitem[];
	buckets_acl pg_catalog.aclitem[];
	g record;
BEGIN
	SELECT p.proacl INTO define_acl FROM pg_catalog.pg_proc p
		WHERE p.oid = '@extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean)'::pg_catalog.regprocedure;
	SELECT p.proacl INTO buckets_acl FROM pg_catalog.pg_proc p
		WHERE p.oid = '@extschema@.pyrate_buckets()'::pg_catalog.regprocedure;

	DROP FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean);
	DROP FUNCTION @extschema@.pyrate_define(text, text, text, boolean);
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates @extschema@.pyrate_rate[],
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false,
		slots integer DEFAULT NULL,
		max_buckets bigint DEFAULT NULL)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define' LANGUAGE C VOLATILE PARALLEL UNSAFE;
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates text,
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false,
		slots integer DEFAULT NULL,
		max_buckets bigint DEFAULT NULL)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define_text' LANGUAGE C VOLATILE PARALLEL UNSAFE;

	DROP FUNCTION @extschema@.pyrate_buckets();
	CREATE FUNCTION @extschema@.pyrate_buckets(
		OUT name text, OUT pattern text, OUT storage text,
		OUT rates @extschema@.pyrate_rate[], OUT count bigint, OUT entries bigint)
	RETURNS SETOF record
		AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE;

	REVOKE ALL ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint),
		@extschema@.pyrate_define(text, text, text, boolean, integer, bigint),
		@extschema@.pyrate_buckets() FROM PUBLIC;

	FOR g IN
		SELECT f.functions,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC'
				ELSE pg_catalog.quote_ident(r.rolname) END AS grantee,
			a.is_grantable
		FROM (VALUES (define_acl, '@extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint), @extschema@.pyrate_define(text, text, text, boolean, integer, bigint)'),
				(buckets_acl, '@extschema@.pyrate_buckets()')) f (acl, functions),
			LATERAL pg_catalog.aclexplode(f.acl) a
			LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
		WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', g.functions,
			g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$pyrate$;
COMMENT ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint) IS 'define (or redefine) the rates of a bucket name or a pattern with *; slots => n bounds what each bucket stores, max_buckets => n how many memory buckets it may have; returns the definition';
COMMENT ON FUNCTION @extschema@.pyrate_define(text, text, text, boolean, integer, bigint) IS 'define (or redefine) with rates as text: ''5/s'', ''5/s, 1000/h'' or ''{5/s,1000/h}''; returns the definition';
COMMENT ON FUNCTION @extschema@.pyrate_buckets() IS 'every bucket of both engines: its definition, the units it counts and the entries it stores';
