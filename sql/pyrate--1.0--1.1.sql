/* pyrate 1.0 -> 1.1: rates as text, pyrate_define returns the definition,
   and table buckets say when they are next due for a leak */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.1'" to load this file. \quit

-- pyrate_rate(5, 'SECOND'), pyrate_rate(5, '1500ms'), pyrate_rate(5, '90 seconds')
CREATE FUNCTION @extschema@.pyrate_rate("limit" integer, "interval" text) RETURNS @extschema@.pyrate_rate
	AS 'MODULE_PATHNAME', 'pyrate_rate_make_text' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pyrate_rate(integer, text) IS 'a rate of limit units per interval: SECOND ... WEEK, 1500ms, 2d, h, or an interval such as ''90 seconds''';

-- pyrate_define returns the definition it stored, and takes rates as text
-- too ('5/s', '5/s, 1000/h', '{5/s,1000/h}').  A new return type needs a
-- new function: the privileges granted on the old one are granted again.
CREATE TYPE @extschema@.pyrate_definition AS (
	pattern text,
	rates @extschema@.pyrate_rate[],
	storage text,
	dry_run boolean
);
DO $pyrate$
DECLARE
	acl pg_catalog.aclitem[];
	g record;
BEGIN
	SELECT p.proacl INTO acl FROM pg_catalog.pg_proc p
		WHERE p.oid = '@extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean)'::pg_catalog.regprocedure;

	DROP FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean);
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates @extschema@.pyrate_rate[],
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define' LANGUAGE C VOLATILE PARALLEL UNSAFE;
	CREATE FUNCTION @extschema@.pyrate_define(
		pattern text,
		rates text,
		storage text DEFAULT pg_catalog.current_setting('pyrate.default_storage', true),
		dry_run boolean DEFAULT false)
	RETURNS @extschema@.pyrate_definition
		AS 'MODULE_PATHNAME', 'pyrate_define_text' LANGUAGE C VOLATILE PARALLEL UNSAFE;
	REVOKE ALL ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean),
		@extschema@.pyrate_define(text, text, text, boolean) FROM PUBLIC;

	FOR g IN
		SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
				ELSE pg_catalog.quote_ident(r.rolname) END AS grantee,
			a.is_grantable
		FROM pg_catalog.aclexplode(acl) a
			LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
		WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean), @extschema@.pyrate_define(text, text, text, boolean) TO %s%s',
			g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$pyrate$;
COMMENT ON FUNCTION @extschema@.pyrate_define(text, @extschema@.pyrate_rate[], text, boolean) IS 'define (or redefine) the rates of a bucket name or a pattern with *; returns the definition';
COMMENT ON FUNCTION @extschema@.pyrate_define(text, text, text, boolean) IS 'define (or redefine) with rates as text: ''5/s'', ''5/s, 1000/h'' or ''{5/s,1000/h}''; returns the definition';

-- When each table bucket next has something to leak or to reclaim (its
-- oldest item's time plus its largest interval): a leak reads the buckets
-- due, through this index, not every bucket.  Every existing bucket is due
-- at once; its first leak after the update sets the real time.
ALTER TABLE @extschema@.pyrate_bucket_data ADD COLUMN due bigint;
UPDATE @extschema@.pyrate_bucket_data b SET due = coalesce(
	(SELECT pg_catalog.min(i.ts) FROM @extschema@.pyrate_item_data i WHERE i.bucket OPERATOR(pg_catalog.=) b.id), 0);
CREATE INDEX pyrate_bucket_data_due ON @extschema@.pyrate_bucket_data (due);
