import type { INestApplicationContext } from '@nestjs/common';
import type Stripe from 'stripe';
import { Session, createAdmin } from '../support/auth';
import { drain } from '../support/drain';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { expectProblem } from '../support/http';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * An admin's refund waits on Stripe for PAYMENT_START_BUDGET_MS in all, as a customer's payment
 * start does, then answers 201 with the refund `pending` (API-NOTES: a refund the provider has
 * not confirmed yet) — which its follow-up job settles later, with the same provider key: one
 * refund at Stripe, whichever call made it. Before, the SDK's 8 s timeout sent three times kept
 * the admin waiting ~25 s on a slow Stripe, past a load balancer's timeout, and the admin clicked
 * again.
 */
const BUDGET_MS = 2_000;
/**
 * Room for the answer's own work (the database, the response) beyond the budget, on a machine busy
 * with the rest of the suite (a payment start's, the same shape, took 1.6 s once): still well short
 * of the SDK's 8 s timeout alone.
 */
const SLACK_MS = 3_000;
/** A drain that runs each refund's settle-refund follow-up now (not 5 s after the request). */
const SETTLE_REFUNDS_NOW = { due: (jobId: string) => jobId.startsWith('settle-refund.') };

describe("an admin's refund waits on a slow Stripe within its budget", () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let admin: Session;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({
      env: {
        ...stripe.env(),
        PAYMENT_START_BUDGET_MS: String(BUDGET_MS),
      },
    });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    admin = await createAdmin(t);
  });
  // a case that failed midway leaves no stall armed for the next
  afterEach(() => stripe.stallNext('/v1/refunds', 0));
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await stripe?.close();
  });

  const deliver = (event: Stripe.Event) => deliverSigned(t.http, stripe, event);
  const orderOf = async (orderId: string) =>
    (await t.http.get(`/v1/orders/${orderId}`, { token: alice.token })).body;
  const paidOrder = async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5, priceAmount: 10_000 });
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
    });
    return { orderId: order.body.id as string, intent: pay.body.paymentIntentId as string };
  };
  const refund = async (orderId: string, key: string | undefined) => {
    const began = performance.now();
    const res = await t.http.post(
      `/v1/admin/orders/${orderId}/refunds`,
      {},
      { token: admin.accessToken, idempotencyKey: key },
    );
    return { res, ms: performance.now() - began };
  };
  /** The refund creates sent to Stripe for the intent, by idempotency key. */
  const refundPosts = (intent: string) =>
    stripe.requests
      .filter((r) => r.method === 'POST' && r.path === '/v1/refunds')
      .filter((r) => r.body.payment_intent === intent)
      .map((r) => r.idempotencyKey);

  it.each([
    // (stalled again and again: the SDK's own retries would stall too)
    ['never answers (and makes nothing)', () => stripe.stallNext('/v1/refunds', 10)],
    ['refunds but its answer never arrives', () => void stripe.hangAfterEffect('/v1/refunds')],
  ])(
    'Stripe %s: 201 pending within the budget; clicking again makes no second refund; the worker settles it once',
    async (_, slow) => {
      const { orderId, intent } = await paidOrder();
      const key = newKey();
      slow();
      const { res, ms } = await refund(orderId, key);
      expect(ms).toBeLessThan(BUDGET_MS + SLACK_MS);
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        orderId,
        status: 'pending',
        amount: { amount: 10_000, currency: 'INR' },
      });
      const refundId = res.body.id as string;
      expect(refundPosts(intent)).toEqual([`refund:${refundId}`]);

      // the admin clicks again: the same key replays the answer; none is refused; a new key
      // finds nothing left to refund (the pending refund holds it all)
      const again = await refund(orderId, key);
      expect(again.res.status).toBe(201);
      expect(again.res.headers.get('idempotent-replayed')).toBe('true');
      expect(again.res.body).toEqual(res.body);
      expectProblem((await refund(orderId, undefined)).res, 400, 'IDEMPOTENCY_KEY_MISSING');
      expectProblem((await refund(orderId, newKey())).res, 409, 'REFUND_EXCEEDS_CAPTURED');
      expect(refundPosts(intent)).toEqual([`refund:${refundId}`]);

      // Stripe answers again; the refund's follow-up job finishes it under the same key
      stripe.stallNext('/v1/refunds', 0);
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
      const { rows } = await t.db.pool.query(
        `SELECT r.id, r.status, r.amount::int, r.provider_refund_id, p.refund_reserved::int
           FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.order_id = $1`,
        [orderId],
      );
      const atStripe = stripe.refundsOf(intent);
      expect(atStripe.map((r) => [r.amount, r.status, r.metadata?.refundId])).toEqual([
        [10_000, 'succeeded', refundId],
      ]);
      expect(rows).toEqual([
        {
          id: refundId,
          status: 'succeeded',
          amount: 10_000,
          provider_refund_id: atStripe[0].id,
          refund_reserved: 10_000,
        },
      ]);
      expect(new Set(refundPosts(intent))).toEqual(new Set([`refund:${refundId}`]));
      expect(await orderOf(orderId)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
    },
    60_000,
  );
});
