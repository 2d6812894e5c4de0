/* pyrate 1.1 -> 1.2: table items keep one index, their primary key
   (bucket, cum); the first item of a window is found by a search on cum */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.2'" to load this file. \quit

DROP INDEX @extschema@.pyrate_item_data_ts;
