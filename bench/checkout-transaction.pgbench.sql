-- The checkout's database work alone, as pgbench can run it (docs/BENCHMARKS.md, "Checkout: where
-- a request's CPU goes"): the statements one POST /v1/orders sends — BEGIN + the idempotency
-- claim (idempotency_claim), the price snapshot (both in BEGIN's message), then the order / lines / history (place_order) and
-- outbox insert, the idempotency record, the reservation (reserve_stock: row locks, then the guarded
-- UPDATE and its ledger row), and COMMIT (one message) — with no API in the way. As the API does, the
-- statements go in two messages (`\;` joins statements into one message, one round trip).
-- Products and users are picked among the first 64 of a benchmark database (bench/flash-sale.ts
-- leaves one: shop_bench_flash_sale; give its inventory stock first) and compare with pgbench running
-- the minimal transaction (bench/pgbench.ts, the baseline npm run bench:flash-sale prints), e.g.:
--   pgbench -n -c 64 -j 2 -T 8 -f bench/checkout-transaction.pgbench.sql <db>
\set n random(0, 63)
\set k random(1, 1000000000000)
BEGIN \;
SELECT claimed, state, method, route, fingerprint, status, body FROM idempotency_claim('user:' || :n, 'k' || :k, now()) \;
SELECT id, sku, name, price_amount, currency, active FROM products WHERE id = ANY(ARRAY[(SELECT product_id FROM inventory_items ORDER BY product_id OFFSET :n LIMIT 1)]::uuid[]);
WITH extra AS (INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at) VALUES (gen_random_uuid(), 'order.created', gen_random_uuid(), jsonb_build_object('orderId', 'x', 'reservationExpiresAt', now()::text), 'pending', 0, now(), now())) SELECT place_order(gen_random_uuid(), (SELECT id FROM users ORDER BY id OFFSET :n LIMIT 1), 'INVENTORY_RESERVED', 'INR', 24900, now() + interval '15 min', now(), ARRAY[(SELECT product_id FROM inventory_items ORDER BY product_id OFFSET :n LIMIT 1)]::uuid[], '{"P-x"}'::text[], '{"x"}'::text[], '{1}'::int[], '{24900}'::bigint[], '{24900}'::bigint[], 'user:' || :n, '{NULL,"CREATED"}'::text[], '{"CREATED","INVENTORY_RESERVED"}'::text[], '{NULL,NULL}'::text[]) \;
INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, response_status, response_body, created_at, expires_at) VALUES ('user:' || :n, ('k' || :k), 'POST', '/v1/orders', 'bba9a90b02fc6290667511993a72d2db417d40cdb4f10dc355d7e6c90cdb1f69', 'completed', 201, '{"id":"x","status":"INVENTORY_RESERVED","currency":"INR","totalAmount":24900,"items":[{"productId":"y","quantity":1}]}', now(), now() + interval '1 day') \;
SELECT "productId", available FROM reserve_stock(gen_random_uuid(), ARRAY[(SELECT product_id FROM inventory_items ORDER BY product_id OFFSET :n LIMIT 1)]::uuid[], '{1}'::int[], now()) \;
COMMIT;
