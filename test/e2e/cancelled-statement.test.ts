import { DbCircuitBreaker } from '../../src/database/db-circuit-breaker';
import { LOCK_WAIT_MS } from '../../src/database/data-source-options';
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

  it("a stock row held longer than LOCK_WAIT_MS (an operator's open transaction): the waiting checkouts end at the lock wait with 503 + Retry-After, their connections free, the breaker closed, other routes served meanwhile", async () => {
    const holder = await t.db.pool.connect();
    let pending: ReturnType<typeof placeOrder>[] = [];
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
        product,
      ]);
      const started = performance.now();
      pending = [1, 2, 3].map(() =>
        placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }], newKey()),
      );
      await untilWaitingOnLocks(t.db.pool, 'the checkouts to wait on the inventory row', {
        count: 3,
      });
      // the rest of the shop is served while they wait
      expect((await t.http.get('/v1/orders', { token: buyer.token })).status).toBe(200);
      const answers = await Promise.all(pending);
      const tookMs = performance.now() - started;
      expect(answers.map((r) => [r.status, r.body.code])).toEqual(
        Array(3).fill([503, 'SERVICE_UNAVAILABLE']),
      );
      for (const r of answers)
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(tookMs).toBeGreaterThanOrEqual(LOCK_WAIT_MS - 100);
      // (lock_timeout times each wait: a checkout queued behind another waits anew, up to as long
      // again, once the one ahead gives up)
      expect(tookMs).toBeLessThan(2 * LOCK_WAIT_MS + 3_000);
      // nobody waits on the row any more, though its holder still holds it
      const waiting = await t.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      expect(waiting.rows[0].n).toBe(0);
      expect(t.app.get(DbCircuitBreaker).state).toBe('closed');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      await Promise.all(pending.map((p) => p.catch(() => undefined)));
    }
    expect(await stockOf(t.db.pool, product)).toEqual({ onHand: 5, reserved: 2 });
    await assertStockInvariants(t.db.pool, [product]);
  }, 30_000);
});
