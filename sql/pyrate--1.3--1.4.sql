/* pyrate 1.3 -> 1.4: memory buckets are WAL-logged (durable) unless their
   definition says durable => false, the volatile buckets of 1.3 */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.4'" to load this file. \quit

-- durable: a memory bucket's puts, leaks, flushes and disposals go to the
-- WAL, so the bucket survives a crash and follows a failover.  false: the
-- bucket lives in this server's shared memory only (saved at a clean
-- shutdown, empty after a crash).  Table buckets are always durable.
ALTER TABLE @extschema@.pyrate_definition_data ADD COLUMN durable boolean NOT NULL DEFAULT true
	CONSTRAINT pyrate_definition_data_durable_check CHECK (durable OR storage = 'memory');
ALTER TYPE @extschema@.pyrate_definition ADD ATTRIBUTE durable boolean;

CREATE OR REPLACE VIEW @extschema@.pyrate_definitions AS
	SELECT pattern, rates, storage, dry_run, created, slots, max_buckets, durable
	FROM @extschema@.pyrate_definition_data;

-- New signatures need new functions: the privileges granted on the old ones
-- are granted again on the new.
DO $pyrate$
DECLARE
	define_acl pg_catalog.aclitem[];
	g record;
BEGIN
	SELECT p.proacl INTO define_acl FROM pg_catalog.pg_proc p
		WHERE p.oid = '@extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint)'::pg_catalog.regprocedure;

	DROP FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint);
	DROP FUNCTION @extschema@.pyrate_define(text, text, text, boolean, integer, bigint);
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates @extschema@.pyrate_rate[],
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false,
		slots integer DEFAULT NULL,
		max_buckets bigint DEFAULT NULL,
		durable boolean DEFAULT NULL)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define' LANGUAGE C VOLATILE PARALLEL UNSAFE;
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates text,
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false,
		slots integer DEFAULT NULL,
		max_buckets bigint DEFAULT NULL,
		durable boolean DEFAULT NULL)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define_text' LANGUAGE C VOLATILE PARALLEL UNSAFE;

	REVOKE ALL ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint, boolean),
		@extschema@.pyrate_define(text, text, text, boolean, integer, bigint, boolean) FROM PUBLIC;

	FOR g IN
		SELECT pg_catalog.quote_ident(r.rolname) AS grantee, a.grantee = 0 AS public, a.is_grantable
		FROM pg_catalog.aclexplode(define_acl) a
			LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
		WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s, %s TO %s%s',
			'@extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint, boolean)',
			'@extschema@.pyrate_define(text, text, text, boolean, integer, bigint, boolean)',
			CASE WHEN g.public THEN 'PUBLIC' ELSE g.grantee END,
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$pyrate$;
COMMENT ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean, integer, bigint, boolean) IS 'define (or redefine) the rates of a bucket name or a pattern with *; slots => n bounds what each bucket stores, max_buckets => n how many memory buckets it may have, durable => false keeps memory buckets out of the WAL; returns the definition';
COMMENT ON FUNCTION @extschema@.pyrate_define(text, text, text, boolean, integer, bigint, boolean) IS 'define (or redefine) with rates as text: ''5/s'', ''5/s, 1000/h'' or ''{5/s,1000/h}''; returns the definition';
