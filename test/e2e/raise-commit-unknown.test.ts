import { randomUUID } from 'node:crypto';
import { INestApplicationContext, Logger } from '@nestjs/common';
import type Stripe from 'stripe';
import { MetricsService } from '../../src/metrics/metrics.service';
import { SecurityEvents } from '../../src/auth/security-events';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { PaymentOrphanSweep, RECONCILING_MS } from '../../src/payments/payment-orphan-sweep';
import { Session, TEST_PASSWORD, createAdmin, registerCustomer } from '../support/auth';
import { drain } from '../support/drain';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PgCommitProxy, startPgCommitProxy } from '../support/pg-commit-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * A raise for a person (an error log and the counter the README says to alert on) is written in
 * the transaction of the change it raises, and runs once that commits — or when the COMMIT's
 * outcome cannot be learned (tx.afterCommitOrUnknown). Before, each ran after a commit seen:
 * when the answer to the COMMIT was lost and the database could not be asked in time (or had
 * restarted since), the job failed, its retry found the change made — and nothing was raised,
 * ever (a worker blink sweep: the customer not refunded, and nobody told). Here the API's and the
 * worker's connections go through a proxy that loses that COMMIT's answer and cuts every question
 * about its outcome (pg_xact_status) for the time the host asks. A security event is such an
 * effect too: a password changed whose COMMIT answer was lost left no `password_changed` line.
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
    const db = await createTestDatabase();
    proxy = await startPgCommitProxy(db.url);
    // the API's and the worker's connections through the proxy — the outcome is asked on a side
    // connection, to the lock URL: through it too (the tests' own pool, t.db.pool, is not)
    const through = proxy.through(db.url);
    t = await bootTestApp({
      db,
      env: {
        ...stripe.env(),
        ORDER_MINIMUM_AMOUNT: '1',
        DATABASE_URL: through,
        DATABASE_LOCK_URL: through,
        // (the orphan sweep runs when a test calls it)
        PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: '0',
      },
    });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    admin = await createAdmin(t);
  }, 120_000);
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await t?.db.drop();
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

  /** An order of alice's whose payment has started (its intent made at Stripe). */
  const startedPayment = async (priceAmount: number) => {
    const productId = await insertProduct(t.db.pool, { stock: 10, priceAmount });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    return { orderId: order.body.id as string, intent: pay.body.paymentIntentId as string };
  };

  const paidOrder = async () => {
    const started = await startedPayment(10_000);
    await deliver(stripe.succeed(started.intent));
    await waitFor(
      'the order confirmed',
      async () => (await rows(`SELECT status FROM orders WHERE id = $1`, [started.orderId]))[0],
      { until: (o) => o.status === 'CONFIRMED', timeoutMs: 20_000 },
    );
    await drainAll();
    return started;
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
    const { orderId, intent } = await startedPayment(7_300);
    await drainAll();
    // the backup knew neither the order nor its payment
    await rows(`DELETE FROM payments WHERE order_id = $1`, [orderId]);
    await rows(`DELETE FROM orders WHERE id = $1`, [orderId]);
    const sample = 'payments_orphaned_total{event="payment"}';
    const before = await counter(sample);

    const lost = loseCommitUnknowably(/^UPDATE "webhook_events" SET "processed_at"/);
    const success = stripe.succeed(intent);
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
  it('an intent paid at Stripe whose webhook never came, found by the orphan sweep: raised once (payment_orphans_found_total +1)', async () => {
    await t.db.pool.query(
      `UPDATE payment_orphan_sweep SET checked_before = statement_timestamp() - interval '1 hour',
              pass_before = NULL, pass_list = NULL, pass_after = NULL`,
    );
    const { intent } = await startedPayment(7_300);
    stripe.succeed(intent); // its webhook never delivered
    stripe.backdate(intent, RECONCILING_MS / 1000 + 30);
    const sample = 'payment_orphans_found_total{kind="intent"}';
    const before = await counter(sample);

    const sweep = worker.get(PaymentOrphanSweep);
    const lost = loseCommitUnknowably(/^INSERT INTO "payment_orphan_reports"/);
    // its record's outcome unknown: the run fails
    await sweep.sweep().catch(() => undefined);
    (await lost)();
    // later runs find it recorded: not raised again
    await sweep.sweep();

    expect(await counter(sample)).toBe(before + 1);
    expect(
      await rows(`SELECT provider_id FROM payment_orphan_reports WHERE provider_id = $1`, [intent]),
    ).toHaveLength(1);
  }, 60_000);

  it('an event whose intent the provider has not known for 30 days is given up, said once (an error line) when the answer to its mark is lost', async () => {
    const { orderId } = await paidOrder();
    const gone = `pi_gone_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
    await rows(`UPDATE payments SET intent_id = $1 WHERE order_id = $2`, [gone, orderId]);
    const eventId = `evt_gone_${randomUUID().replace(/-/g, '')}`;
    await rows(
      `INSERT INTO webhook_events (id, type, intent_id, payload, received_at)
       VALUES ($1, 'payment_intent.succeeded', $2, $3, now() - interval '31 days')`,
      [
        eventId,
        gone,
        JSON.stringify({ id: eventId, data: { object: { object: 'payment_intent', id: gone } } }),
      ],
    );
    const errors = jest.spyOn(Logger.prototype, 'error');
    try {
      const finalizer = worker.get(PaymentFinalizer);
      // the answer to the mark itself lost: before, an autocommit UPDATE — done, the pass
      // failed, and the next no longer found the event: nothing said (its COMMIT's answer lost
      // unknowably, in a transaction now, is the cases above)
      const lost = proxy.loseNextAnswer(/^UPDATE "webhook_events" SET "processed_at"/);
      await finalizer.reconcile().catch(() => undefined);
      await lost;
      await finalizer.reconcile();

      const said = errors.mock.calls.filter(
        ([line]) =>
          String(line).includes(`webhook event ${eventId}`) && String(line).includes('given up'),
      );
      expect(said).toHaveLength(1);
    } finally {
      errors.mockRestore();
    }
    expect(
      await rows(
        `SELECT processed_at IS NOT NULL AS processed, outcome FROM webhook_events WHERE id = $1`,
        [eventId],
      ),
    ).toEqual([{ processed: true, outcome: 'unknown-intent' }]);
  }, 60_000);

  it('a password change whose COMMIT outcome is unknown: 503 — and, the password changed, its security event is recorded (password_changed)', async () => {
    const owner = await registerCustomer(t.http);
    const hashOf = async () =>
      (await rows(`SELECT password_hash FROM users WHERE id = $1`, [owner.user.id]))[0]
        .password_hash as string;
    const before = await hashOf();
    const record = jest.spyOn(t.app.get(SecurityEvents), 'record');
    try {
      const lost = loseCommitUnknowably(/^UPDATE "users" SET "password_hash"/);
      const change = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'another-horse-battery-9' },
        { token: owner.accessToken },
      );
      (await lost)();
      expect([change.status, change.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect(await hashOf()).not.toBe(before); // it did change
      expect(
        record.mock.calls.filter(
          ([e]) => e.event === 'password_changed' && 'userId' in e && e.userId === owner.user.id,
        ),
      ).toHaveLength(1);
    } finally {
      record.mockRestore();
    }
  }, 60_000);
});
