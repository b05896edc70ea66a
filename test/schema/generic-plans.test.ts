import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * The PL/pgSQL functions that run statements (all but the `raise_*` helpers, triggers that only
 * compute a column — users_password_epoch, products_on_sale_epoch, orders_placed_epoch — and the
 * key question)
 * plan them once per connection (migrations CheckoutGenericPlans, IdempotencyClaimFunction): with the default
 * plan_cache_mode a statement taking an array parameter (`= ANY(p_product_ids)`, `unnest(…)`) was
 * re-planned on every call (the generic plan's estimate never wins). `CREATE OR REPLACE FUNCTION`
 * resets a function's settings unless it names them again, and a new function forgets them: both
 * fail here.
 */
describe('stock and order functions keep their generic plans', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('every PL/pgSQL function that runs statements is set to force_generic_plan', async () => {
    const { rows } = await db.pool.query<{ name: string; config: string[] | null }>(
      `SELECT p.proname AS name, p.proconfig AS config
         FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'plpgsql'
          AND p.proname NOT LIKE 'raise\\_%'
          AND p.proname <> 'users_password_epoch'
          AND p.proname <> 'products_on_sale_epoch'
          AND p.proname <> 'orders_placed_epoch'
          -- a trigger on an operator's role change: once a month, not a sale's path
          AND p.proname <> 'users_role_changed'
          -- and on an operator's password reset
          AND p.proname <> 'users_password_set'
          -- a trigger on a live session deleted (an account deleted): rarer still
          AND p.proname <> 'refresh_family_deleted'
          -- a trigger that compares an order's old and new status: it runs no statement
          AND p.proname <> 'orders_status_transition'
          -- a trigger that clears an idempotency record's stale body hash: it runs no statement
          AND p.proname <> 'idempotency_keys_own_body_clears_hash'
          -- planned per call on purpose (migration CheckoutGenericPlans): its expiry filter needs
          -- the instant for a good estimate; the test below shows the generic plan it would get
          AND p.proname <> 'idempotency_keys_in_use'
        ORDER BY 1`,
    );
    expect(rows.map((r) => r.name)).toEqual([
      'idempotency_claim',
      'place_order',
      'refresh_family_idle_expiry',
      'refund_reserved_of_refunds',
      'reserve_stock',
      'settle_stock',
    ]);
    for (const row of rows) {
      expect({ [row.name]: row.config }).toEqual({
        [row.name]: expect.arrayContaining(['plan_cache_mode=force_generic_plan']),
      });
    }
  });

  it('the reservation reaches its rows by primary key under the generic plan; the key question would not (2,000 products, 5,000 keys)', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO products (sku, name, price_amount, currency)
         SELECT 'GP-' || g, 'Product ' || g, 100 + g, 'INR' FROM generate_series(1, 2000) g`,
      );
      await client.query(
        `INSERT INTO inventory_items (product_id, on_hand) SELECT id, 10 FROM products`,
      );
      await client.query(
        `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
         SELECT 'user:' || (g % 50), 'k' || g, 'POST', '/v1/orders', 'f', 'completed', now(), now() + interval '1 day'
           FROM generate_series(1, 5000) g`,
      );
      await client.query('ANALYZE products, inventory_items, idempotency_keys');
      await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
      await client.query(
        `PREPARE locks(uuid[]) AS SELECT 1 FROM inventory_items i WHERE i.product_id = ANY($1) ORDER BY i.product_id FOR UPDATE`,
      );
      await client.query(
        `PREPARE repriced(uuid) AS SELECT oi.product_id FROM order_items oi JOIN orders o ON o.id = oi.order_id
           JOIN products p ON p.id = oi.product_id WHERE oi.order_id = $1 AND oi.unit_price_amount <> p.price_amount`,
      );
      await client.query(
        `PREPARE asked(text[], text[], timestamptz) AS SELECT i.principal FROM idempotency_keys i
           JOIN unnest($1, $2) AS k(p, k) ON i.principal = k.p AND i.key = k.k WHERE i.expires_at > $3`,
      );
      const plan = async (sql: string) =>
        (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`)).rows
          .map((r) => r['QUERY PLAN'])
          .join('\n');
      const locks = await plan(`EXECUTE locks('{00000000-0000-4000-8000-000000000000}')`);
      expect(locks).toContain('inventory_items_pkey');
      expect(locks).not.toContain('Seq Scan');
      const repriced = await plan(`EXECUTE repriced('00000000-0000-4000-8000-000000000000')`);
      expect(repriced).toContain('order_items_pkey');
      expect(repriced).not.toContain('Seq Scan');
      // the sold-out fast path's key question (idempotency_keys_in_use), were it planned
      // generically: every live key read by the expiry index — why it is planned per call
      const asked = await plan(`EXECUTE asked('{user:1}', '{k1}', now())`);
      expect(asked).toContain('idempotency_keys_expiry_idx');
      const custom = await plan(
        `SELECT i.principal FROM idempotency_keys i JOIN unnest('{user:1}'::text[], '{k1}'::text[]) AS k(p, k)
           ON i.principal = k.p AND i.key = k.k WHERE i.expires_at > now()`,
      );
      expect(custom).toContain('idempotency_keys_pkey');
    } finally {
      await client.query('ROLLBACK');
      await client.query('DEALLOCATE ALL');
      client.release();
    }
  });
});
