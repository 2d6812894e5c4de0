-- Privileges: acquiring is for everyone, configuring for the owner.
SELECT pyrate_define('priv', '{2/s}');
CREATE ROLE pyrate_user;
SET ROLE pyrate_user;
-- PUBLIC may acquire and look
SELECT pyrate_put('priv'), pyrate_count('priv'), (pyrate_peek('priv', 0)).weight;
SELECT pyrate_waiting('priv') >= 0, pyrate_now() > 0;
SELECT acquired FROM pyrate_acquire('priv');
SELECT pyrate_try_acquire('priv', 1, false);
SELECT pattern, rates FROM pyrate_definitions WHERE pattern = 'priv';
-- but not configure, flush, dispose or leak
SELECT pyrate_define('mine', '{1/s}');
SELECT pyrate_undefine('priv');
SELECT pyrate_flush('priv');
SELECT pyrate_dispose('priv');
SELECT pyrate_leak('priv');
SELECT pyrate_leak();
SELECT * FROM pyrate_buckets();
-- nor stamp an item with a time of its choosing
SELECT pyrate_put('priv', 1, 1000);
SELECT * FROM pyrate_acquire('priv', 1, 1000);
SELECT pyrate_waiting('priv', 1, 1000);
-- nor touch the tables
SELECT count(*) FROM pyrate_item_data;
INSERT INTO pyrate_definition_data VALUES ('x', '{1/s}', 'table');
DELETE FROM pyrate_item_data;
RESET ROLE;
-- the owner grants what it wants to give
GRANT EXECUTE ON FUNCTION pyrate_flush(text) TO pyrate_user;
SET ROLE pyrate_user;
SELECT pyrate_flush('priv');
SELECT pyrate_put('priv', 1, 1000);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION pyrate_flush(text) FROM pyrate_user;
SELECT pyrate_dispose('priv');
DROP ROLE pyrate_user;
