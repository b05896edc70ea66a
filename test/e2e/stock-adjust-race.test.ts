import { Client } from 'pg';
import { createAdmin } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * A write-off decided on a stale row version: with all stock reserved (10 on hand, 10 reserved),
 * a cancel releases the reservation while an admin writes 5 units off. The adjustment's guarded
 * UPDATE used to read the row as of its snapshot — still 10 reserved while the release was
 * committing — so it skipped the row without waiting for the lock and answered 409
 * STOCK_BELOW_RESERVED with `reserved: 0` in the same body. It must wait for the release and
 * decide on what it committed.
 */
describe('a stock adjustment decides on the committed row, not on its snapshot', () => {
  let t: TestApp;
  let admin: string;

  beforeAll(async () => {
    t = await bootTestApp();
    admin = (await createAdmin(t)).accessToken;
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Holds a release of the product's reservation uncommitted until the returned commit(). */
  async function releasePending(productId: string): Promise<{ commit: () => Promise<void> }> {
    const c = new Client({ connectionString: t.db.url });
    await c.connect();
    await c.query('BEGIN');
    await c.query(`UPDATE inventory_items SET reserved = 0 WHERE product_id = $1`, [productId]);
    return {
      commit: async () => {
        await c.query('COMMIT');
        await c.end();
      },
    };
  }

  it.each([
    ['without an Idempotency-Key', () => ({})],
    ['with an Idempotency-Key', () => ({ 'idempotency-key': newKey() })],
  ])('a write-off during a release waits for it and succeeds (%s)', async (_, headers) => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    await t.db.pool.query(`UPDATE inventory_items SET reserved = 10 WHERE product_id = $1`, [p]);
    const release = await releasePending(p);
    let committed = false;
    try {
      const adjusting = t.http.post(
        `/v1/admin/products/${p}/stock-adjustments`,
        { delta: -5, reason: 'damaged' },
        { token: admin, headers: headers() },
      );
      // the old code answers at once (409) without ever waiting: no lock wait to see
      const first = await Promise.race([
        adjusting.then(() => 'answered' as const),
        untilWaitingOnLocks(t.db.pool, 'the adjustment waiting on the row').then(
          () => 'waiting' as const,
        ),
      ]);
      await release.commit();
      committed = true;
      const res = await adjusting;
      expect({ first, status: res.status, body: res.body }).toEqual({
        first: 'waiting',
        status: 200,
        body: { onHand: 5, reserved: 0, available: 5 },
      });
    } finally {
      if (!committed) await release.commit();
    }
    expect(await stockOf(t.db.pool, p)).toMatchObject({ onHand: 5, reserved: 0 });
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('a write-off that a concurrent reservation makes short is refused with the row it decided on', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    await t.db.pool.query(`UPDATE inventory_items SET reserved = 5 WHERE product_id = $1`, [p]);
    const c = new Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`UPDATE inventory_items SET reserved = 10 WHERE product_id = $1`, [p]);
      const adjusting = t.http.post(
        `/v1/admin/products/${p}/stock-adjustments`,
        { delta: -5, reason: 'damaged' },
        { token: admin },
      );
      await untilWaitingOnLocks(t.db.pool, 'the adjustment waiting on the row');
      await c.query('COMMIT');
      const res = await adjusting;
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({
        code: 'STOCK_BELOW_RESERVED',
        onHand: 10,
        reserved: 10,
        delta: -5,
      });
    } finally {
      await c.end();
    }
    expect(await stockOf(t.db.pool, p)).toMatchObject({ onHand: 10, reserved: 10 });
  });
});
