import type { INestApplicationContext } from '@nestjs/common';
import type Stripe from 'stripe';
import { Session, createAdmin } from '../support/auth';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { HoldingProxy, startHoldingProxy } from '../support/holding-proxy';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { TestApp, bootTestApp } from '../support/test-app';
import type { TestDatabase } from '../support/test-database';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Issue 11, defect 5: a refund asked for as PostgreSQL restarted stayed `pending` two minutes after
 * recovery (only the minute-long stale sweep would finish it), and its key was refused IN_USE
 * after the failed request. On a private PostgreSQL, with the real worker running: the refund
 * request is held in its provider call, the database crashes, Stripe refunds, our record of it
 * fails, the database comes back — the refund must settle within seconds, by itself.
 */
describe('a refund whose request a database outage cut off', () => {
  let pg: PrivatePostgres;
  let db: TestDatabase;
  let stripe: FakeStripe;
  let proxy: HoldingProxy;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let admin: Session;

  const deliver = (event: Stripe.Event) => deliverSigned(t.http, stripe, event);
  const orderOf = async (orderId: string) =>
    (await t.http.get(`/v1/orders/${orderId}`, { token: alice.token })).body;
  const refundsOf = async (orderId: string) =>
    (
      await db.pool.query(`SELECT id, status, amount::int FROM refunds WHERE order_id = $1`, [
        orderId,
      ])
    ).rows as {
      id: string;
      status: string;
      amount: number;
    }[];

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    db = await pg.migratedDatabase();
    stripe = await startFakeStripe();
    proxy = await startHoldingProxy(stripe.url);
    t = await bootTestApp({
      db,
      env: stripe.env(proxy.url),
    });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    admin = await createAdmin(t);
  }, 120_000);
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await db?.drop();
    await proxy?.close();
    await stripe?.close();
    await pg?.destroy();
  });

  it('settles within seconds of recovery, once; the retry with its key is not refused', async () => {
    const productId = await insertProduct(db.pool, { stock: 5, priceAmount: 10_000 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    await deliver(stripe.succeed(pay.body.paymentIntentId));
    await waitFor('the order to be confirmed', () => orderOf(order.body.id), {
      until: (o) => o.status === 'CONFIRMED',
      timeoutMs: 20_000,
    });

    const key = newKey();
    const body = { amount: { amount: 4_000, currency: 'INR' } };
    const gate = proxy.holdNext('POST', '/v1/refunds');
    const pending = t.http.post(`/v1/admin/orders/${order.body.id}/refunds`, body, {
      token: admin.accessToken,
      idempotencyKey: key,
    });
    await gate.reached; // reserved and recorded as pending; the request waits for Stripe
    await pg.stop('immediate');
    gate.release(); // Stripe refunds; our record of its answer fails with the database
    const failed = await pending;
    expect(failed.status).toBeGreaterThanOrEqual(500);
    await pg.start();
    const recovered = Date.now();

    const settled = await waitFor(
      'the refund to settle by itself',
      () => refundsOf(order.body.id),
      {
        until: (rows) => rows[0]?.status === 'succeeded',
        timeoutMs: 15_000,
        retryErrors: true, // the pool may still be reconnecting
      },
    );
    expect(Date.now() - recovered).toBeLessThan(15_000);
    expect(settled).toEqual([{ id: expect.any(String), status: 'succeeded', amount: 4_000 }]);
    const o = await orderOf(order.body.id);
    expect(o).toMatchObject({ status: 'PARTIALLY_REFUNDED', refunded: { amount: 4_000 } });
    const atStripe = await stripe
      .client()
      .refunds.list({ payment_intent: pay.body.paymentIntentId });
    expect(atStripe.data.map((r) => r.amount)).toEqual([4_000]);

    const retry = await t.http.post(`/v1/admin/orders/${order.body.id}/refunds`, body, {
      token: admin.accessToken,
      idempotencyKey: key,
    });
    expect([retry.status, retry.body.id, retry.body.status]).toEqual([
      201,
      settled[0].id,
      'succeeded',
    ]);
    expect(
      (await stripe.client().refunds.list({ payment_intent: pay.body.paymentIntentId })).data,
    ).toHaveLength(1);
  }, 90_000);
});
