/* pyrate 1.4 -> 1.5: a table item of weight 1 stores its weight as NULL.
   The null bitmap fits in the padding of the row's header, so such a row,
   and the WAL record that inserts it, is 8 bytes shorter.  Rows written
   before the update keep their 1; both read the same. */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.5'" to load this file. \quit

ALTER TABLE @extschema@.pyrate_item_data ALTER COLUMN weight DROP NOT NULL;
COMMENT ON COLUMN @extschema@.pyrate_item_data.weight IS 'units of the item; NULL for 1, negative when stacked, 0 for a leaked bucket''s tombstone';
