import { INestApplicationContext, Logger } from '@nestjs/common';
import type Stripe from 'stripe';
import { MetricsService } from '../../src/metrics/metrics.service';
import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * PostgreSQL restored from a backup older than some orders, while Stripe kept its newer state: an
 * intent of ours (its metadata names an order as we write them) whose order the database no
 * longer has. Its success, refund or dispute was answered 200 and dropped as "no payment of ours";
 * nothing ever looked at the provider's intents, so the money taken was never found (restore review).
 */
describe('payments whose order the database does not have (restored from an older backup)', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;

  const deliver = (event: Stripe.Event) => {
    const { body, signature } = stripe.signed(event);
    return t.http.request('POST', '/v1/webhooks/stripe', undefined, {
      raw: body,
      headers: { 'stripe-signature': signature },
    });
  };
  /** The event's recorded outcome, once it is processed. */
  const outcomeOf = async (eventId: string) =>
    (
      await waitFor(
        `event ${eventId} to be processed`,
        async () =>
          (
            await t.db.pool.query<{ outcome: string | null }>(
              `SELECT outcome FROM webhook_events WHERE id = $1 AND processed_at IS NOT NULL`,
              [eventId],
            )
          ).rows[0],
      )
    ).outcome;
  const orphaned = async (event: string) =>
    Number(
      new RegExp(`^payments_orphaned_total\\{event="${event}"\\} (\\d+)`, 'm').exec(
        await worker.get(MetricsService).render(),
      )?.[1] ?? NaN,
    );
  /**
   * An order of alice's whose payment started at Stripe (the intent made, with our metadata), then
   * the database restored to before it: its rows are gone, the intent stays at the provider.
   */
  const lostOrder = async (priceAmount: number) => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    await t.db.pool.query(`DELETE FROM payments WHERE order_id = $1`, [order.body.id]);
    await t.db.pool.query(`DELETE FROM orders WHERE id = $1`, [order.body.id]);
    return { orderId: order.body.id as string, intent: pay.body.paymentIntentId as string };
  };

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({
      env: {
        STRIPE_SECRET_KEY: stripe.secretKey,
        STRIPE_API_URL: stripe.url,
        STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
      },
    });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await stripe?.close();
  });

  it("its success, refund and dispute are answered 200, recorded as `orphan`, counted and logged as errors naming the intent, order and amount; another integration's intent and an unpaid one of ours stay `no-payment`", async () => {
    const errors = jest.spyOn(Logger.prototype, 'error');
    try {
      const before = {
        payment: await orphaned('payment'),
        refund: await orphaned('refund'),
        dispute: await orphaned('dispute'),
      };
      const lost = await lostOrder(7300);

      // the customer pays after the backup's time: the money is taken, no order here has it
      const paid = stripe.succeed(lost.intent);
      expect((await deliver(paid)).status).toBe(200);
      expect(await outcomeOf(paid.id)).toBe('orphan');
      expect(await orphaned('payment')).toBe(before.payment + 1);
      expect(errors).toHaveBeenCalledWith(
        expect.stringContaining(
          `intent ${lost.intent} (succeeded, 7300 INR) names order ${lost.orderId}, which this database does not have`,
        ),
      );
      // (nothing of the customer's, nor the intent's client secret)
      const line = errors.mock.calls.find((c) => String(c[0]).includes(lost.intent))?.[0];
      expect(line).not.toMatch(/_secret_/);

      // a refund made in the dashboard, a chargeback with its evidence deadline
      const refunded = stripe.refundFromDashboard(lost.intent, 7300);
      expect((await deliver(refunded)).status).toBe(200);
      expect(await outcomeOf(refunded.id)).toBe('orphan');
      const disputed = stripe.dispute(lost.intent, 'needs_response', 'created');
      expect((await deliver(disputed)).status).toBe(200);
      expect(await outcomeOf(disputed.id)).toBe('orphan');
      expect([await orphaned('refund'), await orphaned('dispute')]).toEqual([
        before.refund + 1,
        before.dispute + 1,
      ]);
      expect(errors).toHaveBeenCalledWith(
        expect.stringMatching(
          new RegExp(
            `^intent ${lost.intent} .* recorded as orphan — disputed: dispute dp_\\w+ \\(needs_response, 7300 INR\\) — answer it at the payment provider by \\d{4}-`,
          ),
        ),
      );

      // not money: an intent of ours whose order is gone, declined — nothing was taken
      const unpaid = await lostOrder(4100);
      const declined = stripe.decline(unpaid.intent);
      expect((await deliver(declined)).status).toBe(200);
      expect(await outcomeOf(declined.id)).toBe('no-payment');
      // another integration's intent on the account (no order id of ours): ignored as before
      const foreign = await stripe.client().paymentIntents.create({
        amount: 5000,
        currency: 'inr',
        metadata: { till: '7' },
      });
      const elsewhere = stripe.succeed(foreign.id);
      expect((await deliver(elsewhere)).status).toBe(200);
      expect(await outcomeOf(elsewhere.id)).toBe('no-payment');
      const foreignCharge = stripe.eventFor('charge.succeeded', foreign.id);
      expect((await deliver(foreignCharge)).status).toBe(200);
      expect(await outcomeOf(foreignCharge.id)).toBe('no-payment');
      expect(await orphaned('payment')).toBe(before.payment + 1);
      expect(errors).not.toHaveBeenCalledWith(expect.stringContaining(unpaid.intent));
      expect(errors).not.toHaveBeenCalledWith(expect.stringContaining(foreign.id));
    } finally {
      errors.mockRestore();
    }
  }, 60_000);
});
