-- pyrate_throttle: rate-limiting row changes with a trigger.
SELECT pyrate_define('orders:*', '{2/1h}');
SELECT pyrate_define('bulk', '{5/1h}');
CREATE TABLE orders (id serial, customer text, qty int, note text);

-- error (the default): the third order of a customer raises PT429
CREATE TRIGGER throttle BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer');
INSERT INTO orders (customer) VALUES ('alice'), ('alice');
INSERT INTO orders (customer) VALUES ('bob');
\set VERBOSITY terse
INSERT INTO orders (customer) VALUES ('alice');
\set VERBOSITY default
SELECT sqlstate_of($$INSERT INTO orders (customer) VALUES ('alice')$$);
SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY customer;
-- a rolled-back insert gives its permit back (table engine)
BEGIN;
INSERT INTO orders (customer) VALUES ('bob');
ROLLBACK;
INSERT INTO orders (customer) VALUES ('bob');
SELECT pyrate_count('orders:alice') AS alice, pyrate_count('orders:bob') AS bob;
DROP TRIGGER throttle ON orders;

-- skip: rows over the limit are silently dropped
CREATE TRIGGER throttle BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer', 1, 'skip');
INSERT INTO orders (customer, note) SELECT 'carol', 'try ' || g FROM generate_series(1, 5) g;
SELECT note FROM orders WHERE customer = 'carol' ORDER BY note;
DROP TRIGGER throttle ON orders;

-- weight from a column; prefix alone names one bucket for all rows
CREATE TRIGGER throttle BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('bulk', '', 'qty', 'skip');
INSERT INTO orders (customer, qty) VALUES ('dave', 3), ('dave', 3), ('dave', 2), ('dave', NULL);
SELECT qty FROM orders WHERE customer = 'dave' ORDER BY qty NULLS LAST;
SELECT pyrate_count('bulk');
DROP TRIGGER throttle ON orders;

-- a fixed weight, on UPDATE and DELETE too
SELECT pyrate_define('changes', '{3/1h}');
CREATE TRIGGER throttle BEFORE UPDATE OR DELETE ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('changes', '', 2, 'skip');
UPDATE orders SET note = 'changed' WHERE customer = 'bob';
SELECT count(*) FILTER (WHERE note = 'changed') AS changed FROM orders;
DELETE FROM orders WHERE customer = 'alice';
SELECT count(*) AS alice_left FROM orders WHERE customer = 'alice';
DROP TRIGGER throttle ON orders;

-- wait: blocks until admitted (here: the window is short)
SELECT pyrate_define('waiting', '{1/300ms}');
CREATE TRIGGER throttle BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('waiting', '', 1, 'wait');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
INSERT INTO orders (customer) VALUES ('erin'), ('erin');
SELECT count(*) AS erin, (SELECT clock_timestamp() - t >= interval '250 ms' FROM t0) AS waited
FROM orders WHERE customer = 'erin';
DROP TRIGGER throttle ON orders;

-- wrong use is reported at the first firing, naming the trigger
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'nosuchcolumn');
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer', 1, 'explode');
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer', 'note');
INSERT INTO orders (customer, note) VALUES ('x', 'not a number');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad AFTER INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer');
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION pyrate_throttle('orders:');
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle();
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer');
INSERT INTO orders (customer) VALUES (NULL);
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('orders:', 'customer', 'qty');
INSERT INTO orders (customer, qty) VALUES ('x', -1);
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('nodefinition:', 'customer');
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
CREATE TRIGGER bad BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION pyrate_throttle('bulk', '', 6);
INSERT INTO orders (customer) VALUES ('x');
DROP TRIGGER bad ON orders;
SELECT pyrate_throttle();
SELECT count(*) AS no_x FROM orders WHERE customer = 'x';

DROP TABLE orders;
SELECT pyrate_dispose(name) FROM pyrate_buckets() ORDER BY name;
