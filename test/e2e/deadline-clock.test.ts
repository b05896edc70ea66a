import type { INestApplicationContext } from '@nestjs/common';
import { Clock } from '../../src/common/time/clock';
import { OutboxRelay } from '../../src/outbox/outbox.relay';
import { OverdueOrders } from '../../src/payments/overdue-orders.service';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { waitFor } from '../support/wait-for';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

/**
 * A reservation's deadline used to be judged on the clock of whichever process looked: a worker
 * whose clock ran ahead expired an order (and cancelled its intent) before the deadline the buyer
 * was given; an API process ahead refused the payment with 409. Every judge now asks PostgreSQL.
 */
describe('reservation deadlines are judged on PostgreSQL’s clock, whatever the processes’ clocks say', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;

  beforeAll(async () => {
    t = await bootTestApp();
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });
  afterEach(() => jest.restoreAllMocks());

  const skew = (ctx: INestApplicationContext, ms: number) =>
    jest.spyOn(ctx.get(Clock), 'now').mockImplementation(() => new Date(Date.now() + ms));

  /** An order whose deadline is `seconds` from now on the database's clock (negative: past). */
  async function orderDueIn(seconds: number): Promise<string> {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() + make_interval(secs => $2) WHERE id = $1`,
      [order.body.id, seconds],
    );
    return order.body.id as string;
  }
  const statusOf = async (id: string) =>
    (
      await t.db.pool.query(
        `SELECT status, cancellation_reason AS reason FROM orders WHERE id = $1`,
        [id],
      )
    ).rows[0];

  it('a worker 5 s ahead leaves an order alone 3 s before its deadline (the job and the sweeper alike)', async () => {
    const id = await orderDueIn(3);
    skew(worker, 5_000);
    const overdue = worker.get(OverdueOrders);
    expect(await overdue.settle(id)).toBe(false);
    expect(await overdue.sweep()).toBe(0);
    expect(await statusOf(id)).toEqual({ status: 'INVENTORY_RESERVED', reason: null });
  });

  it('an API 5 s ahead lets the buyer pay 3 s before the deadline', async () => {
    const id = await orderDueIn(3);
    skew(t.app, 5_000);
    const pay = await t.http.post(
      `/v1/orders/${id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect([pay.status, pay.body.code]).toEqual([201, undefined]);
    expect((await statusOf(id)).status).toBe('PAYMENT_PENDING');
  });

  it('a worker and an API 5 s behind: the order 1 s past its deadline is not payable, and expires', async () => {
    const id = await orderDueIn(-1);
    skew(t.app, -5_000);
    skew(worker, -5_000);
    const pay = await t.http.post(
      `/v1/orders/${id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect([pay.status, pay.body.code]).toEqual([409, 'ORDER_NOT_PAYABLE']);
    expect(await worker.get(OverdueOrders).settle(id)).toBe(true);
    expect(await statusOf(id)).toEqual({ status: 'CANCELLED', reason: 'RESERVATION_EXPIRED' });
  });

  it("outbox events are due on PostgreSQL's clock: a writer an hour ahead and a relay an hour behind still publish at once", async () => {
    skew(t.app, 3_600_000);
    skew(worker, -3_600_000);
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    const cancel = await t.http.post(
      `/v1/orders/${order.body.id}/cancel`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(cancel.status).toBe(200);
    const events = await t.db.pool.query<{ topic: string; due: boolean }>(
      `SELECT topic, next_attempt_at <= now() + interval '1 minute' AS due FROM outbox WHERE aggregate_id = $1 ORDER BY topic`,
      [order.body.id],
    );
    expect(events.rows).toEqual([
      { topic: 'order.cancelled', due: true },
      { topic: 'order.created', due: true },
    ]);
    // passes of the relay by hand until both are out (its own loop may hold one under its lease for
    // a moment); were they due an hour from now on the relay's clock, none would ever go
    const left = await waitFor(
      'both events to be published',
      async () => {
        await worker.get(OutboxRelay).relayOnce();
        const { rows } = await t.db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = $1 AND status <> 'published'`,
          [order.body.id],
        );
        return rows[0].n;
      },
      { until: (n) => n === 0, timeoutMs: 5_000, intervalMs: 50 },
    );
    expect(left).toBe(0);
  });
});
