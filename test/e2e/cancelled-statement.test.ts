import { registerCustomer } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { untilWaitingOnLocks } from '../support/lock-waiters';

/**
 * A statement the server cancels (statement_timeout set on the role by a DBA, an operator's
 * pg_cancel_backend during an incident) is the database's moment, not the request's fault and
 * not a bug: 503 with Retry-After, nothing written, and the same Idempotency-Key runs afresh.
 */
describe('a checkout whose statement the server cancels', () => {
  let t: TestApp;
  let buyer: Buyer;
  let product: string;

  beforeAll(async () => {
    t = await bootTestApp();
    const customer = await registerCustomer(t.http);
    buyer = { userId: customer.user.id, token: customer.accessToken };
    product = await insertProduct(t.db.pool, { stock: 5 });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 503 + Retry-After, writes nothing, and the retry with the same key succeeds', async () => {
    const holder = await t.db.pool.connect();
    const key = newKey();
    let pending: ReturnType<typeof placeOrder> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
        product,
      ]);
      pending = placeOrder(t.http, buyer, [{ productId: product, quantity: 2 }], key);
      // the checkout's reservation waits on the row the holder locked: cancel that statement
      const waiting = await untilWaitingOnLocks(
        t.db.pool,
        'the checkout to wait on the inventory row',
      );
      await t.db.pool.query('SELECT pg_cancel_backend($1)', [waiting[0]]);
      const res = await pending;
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe('SERVICE_UNAVAILABLE');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      await pending?.catch(() => undefined);
    }

    const orders = await t.db.pool.query(`SELECT id FROM orders WHERE user_id = $1`, [
      buyer.userId,
    ]);
    expect(orders.rows).toHaveLength(0);
    expect(await stockOf(t.db.pool, product)).toEqual({ onHand: 5, reserved: 0 });

    const retried = await placeOrder(t.http, buyer, [{ productId: product, quantity: 2 }], key);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await stockOf(t.db.pool, product)).toEqual({ onHand: 5, reserved: 2 });
    await assertStockInvariants(t.db.pool, [product]);
  });
});
