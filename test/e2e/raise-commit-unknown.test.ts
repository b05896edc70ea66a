import type { INestApplicationContext } from '@nestjs/common';
import type Stripe from 'stripe';
import { MetricsService } from '../../src/metrics/metrics.service';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { Session, createAdmin } from '../support/auth';
import { drain } from '../support/drain';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PgCommitProxy, startPgCommitProxy } from '../support/pg-commit-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * A raise for a person (an error log and the counter the README says to alert on) is written in
 * the transaction of the change it raises, and runs once that commits — or when the COMMIT's
 * outcome cannot be learned (tx.afterCommitOrUnknown). Before, each ran after a commit seen:
 * when the answer to the COMMIT was lost and the database could not be asked in time (or had
 * restarted since), the job failed, its retry found the change made — and nothing was raised,
 * ever (a worker blink sweep: the customer not refunded, and nobody told). Here the worker's
 * connections go through a proxy that loses that COMMIT's answer and cuts every question about
 * its outcome (pg_xact_status) for the time the host asks.
 */
describe('a raise for a person whose COMMIT outcome could not be learned', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let proxy: PgCommitProxy;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let admin: Session;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({ env: { ...stripe.env(), ORDER_MINIMUM_AMOUNT: '1' } });
    proxy = await startPgCommitProxy(t.db.url);
    // (the outcome is asked on a side connection, to the lock URL: through the proxy too)
    const through = proxy.through(t.db.url);
    worker = await bootTestWorker({
      ...t.config,
      database: { ...t.config.database, url: through, lockUrl: through },
    });
    [alice] = await buyers(t.http, 1);
    admin = await createAdmin(t);
  }, 120_000);
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await proxy?.close();
    await stripe?.close();
  });

  const deliver = (event: Stripe.Event) => deliverSigned(t.http, stripe, event);
  const counter = async (sample: string) => {
    const page = await worker.get(MetricsService).render();
    const line = page.split('\n').find((l) => l.startsWith(`${sample} `));
    return Number(line?.split(' ')[1] ?? 0);
  };
  const drainAll = () =>
    drain(worker, t.db.pool, {
      due: (id) => id.startsWith('settle-refund.'),
      timeoutMs: 60_000,
    });
  const rows = async (sql: string, params: unknown[]) => (await t.db.pool.query(sql, params)).rows;

  /** The next COMMIT after a statement matching `after` loses its answer; its outcome is unknown. */
  const loseCommitUnknowably = (after: RegExp) => {
    const lost = proxy.loseNextCommitAnswer(after);
    const asking = proxy.cutStatements(/pg_xact_status/);
    return lost.then(() => asking);
  };

  const paidOrder = async () => {
    const productId = await insertProduct(t.db.pool, { stock: 10, priceAmount: 10_000 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    await deliver(stripe.succeed(pay.body.paymentIntentId));
    await waitFor(
      'the order confirmed',
      async () => (await rows(`SELECT status FROM orders WHERE id = $1`, [order.body.id]))[0],
      { until: (o) => o.status === 'CONFIRMED', timeoutMs: 20_000 },
    );
    await drainAll();
    return { orderId: order.body.id as string, intent: pay.body.paymentIntentId as string };
  };

  it("an admin's refund answered pending, then failed at the bank: raised once (requested_refunds_failed_total +1), recorded failed", async () => {
    const { orderId, intent } = await paidOrder();
    stripe.holdRefunds(intent);
    const refund = await t.http.post(
      `/v1/admin/orders/${orderId}/refunds`,
      { amount: { amount: 2_000, currency: 'INR' } },
      { token: admin.accessToken, idempotencyKey: newKey() },
    );
    expect(refund.body.status).toBe('pending');
    await drainAll();
    const before = await counter('requested_refunds_failed_total');

    const lost = loseCommitUnknowably(/^UPDATE "refunds" SET "status"/);
    const [remote] = stripe.refundsOf(intent);
    await deliver(stripe.settleRefund(remote.id, 'failed'));
    const stopAsking = await lost;
    // the host asks for its outcome for 5 s, then gives up: 'unknown'; the job fails
    await waitFor('the outcome given up on', () => counter('requested_refunds_failed_total'), {
      until: (n) => n > before,
      timeoutMs: 20_000,
    });
    stopAsking();
    await drainAll();

    expect(await counter('requested_refunds_failed_total')).toBe(before + 1);
    expect(
      await rows(`SELECT status, failure, amount::int FROM refunds WHERE order_id = $1`, [orderId]),
    ).toEqual([{ status: 'failed', failure: 'failed_at_provider', amount: 2_000 }]);
    expect(
      await rows(`SELECT status, refunded_amount::int AS refunded FROM orders WHERE id = $1`, [
        orderId,
      ]),
    ).toEqual([{ status: 'CONFIRMED', refunded: 0 }]);
  }, 60_000);

  it('a payment whose order the database does not have (restored from an older backup): raised once (payments_orphaned_total +1), recorded orphan', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5, priceAmount: 7_300 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    await drainAll();
    // the backup knew neither the order nor its payment
    await rows(`DELETE FROM payments WHERE order_id = $1`, [order.body.id]);
    await rows(`DELETE FROM orders WHERE id = $1`, [order.body.id]);
    const sample = 'payments_orphaned_total{event="payment"}';
    const before = await counter(sample);

    const lost = loseCommitUnknowably(/^UPDATE "webhook_events" SET "processed_at"/);
    const success = stripe.succeed(pay.body.paymentIntentId);
    await deliver(success);
    const stopAsking = await lost;
    await waitFor('the outcome given up on', () => counter(sample), {
      until: (n) => n > before,
      timeoutMs: 20_000,
    });
    stopAsking();
    await drainAll();

    expect(await counter(sample)).toBe(before + 1);
    expect(await rows(`SELECT outcome FROM webhook_events WHERE id = $1`, [success.id])).toEqual([
      { outcome: 'orphan' },
    ]);
  }, 60_000);

  it('a dispute whose evidence is due within a day: its reminder is raised once (payments_dispute_deadlines_near_total +1)', async () => {
    const { orderId, intent } = await paidOrder();
    const dueBy = Math.floor(Date.now() / 1000) + 20 * 3600;
    await deliver(stripe.dispute(intent, 'needs_response', 'created', dueBy));
    await drainAll();
    const before = await counter('payments_dispute_deadlines_near_total');

    const lost = loseCommitUnknowably(/^UPDATE payment_disputes AS d SET reminded_at/);
    const finalizer = worker.get(PaymentFinalizer);
    const pass = finalizer.reconcile().catch(() => undefined);
    const stopAsking = await lost;
    await pass;
    stopAsking();
    // later passes find it claimed: not raised again
    await finalizer.reconcile();

    expect(await counter('payments_dispute_deadlines_near_total')).toBe(before + 1);
    expect(
      await rows(
        `SELECT d.reminded_at IS NOT NULL AS reminded FROM payment_disputes d
           JOIN payments p ON p.id = d.payment_id WHERE p.order_id = $1`,
        [orderId],
      ),
    ).toEqual([{ reminded: true }]);
  }, 60_000);
});
