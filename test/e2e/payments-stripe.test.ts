import { INestApplicationContext, Logger } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import Stripe from 'stripe';
import { ReservationExpiryService } from '../../src/orders/reservation-expiry.service';
import { MetricsService } from '../../src/metrics/metrics.service';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { OverdueOrders } from '../../src/payments/overdue-orders.service';
import { PAYMENT_GATEWAY, PaymentGateway } from '../../src/payments/payment-gateway';
import { PaymentRepository } from '../../src/payments/payment.repository';
import { RefundRepository } from '../../src/payments/refund.repository';
import { RefundsService } from '../../src/payments/refunds.service';
import { DisputeRepository } from '../../src/payments/dispute.repository';
import { TransactionHost } from '../../src/database/transaction-host';
import { settleRefundJobId } from '../../src/payments/refund-settle.job';
import { QueueName } from '../../src/queue/queues';
import { Session, createAdmin, signInLimitsAnswering } from '../support/auth';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import { insertRefund } from '../support/refunds';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { drain } from '../support/drain';
import { holdIdempotencyKey } from '../support/idempotency-keys';
import { TestApp, bootTestApp } from '../support/test-app';
import { expectProblem } from '../support/http';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';
import { repairOrders } from '../support/order-status';

/**
 * The Stripe adapter: the real `stripe` SDK against a local fake of the Stripe API, webhooks
 * signed like Stripe's, the worker processing them.
 */
/** A drain that also runs each refund's settle-refund follow-up now (not 5 s later, after the test). */
const SETTLE_REFUNDS_NOW = { due: (jobId: string) => jobId.startsWith('settle-refund.') };

/** An API on the fake Stripe, taking orders of any total (ORDER_MINIMUM_AMOUNT 1). */
const stripeEnv = (stripe: FakeStripe) => ({
  ...stripe.env(),
  ORDER_MINIMUM_AMOUNT: '1',
});

describe('payments through Stripe (real SDK, fake Stripe API)', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let admin: Session;

  const orderOf = async (orderId: string) =>
    (await t.http.get(`/v1/orders/${orderId}`, { token: alice.token })).body;
  /** A counter of the worker's registry (0 before its first increment). */
  const workerCounter = async (name: string) =>
    Number(
      new RegExp(`^${name} (\\d+)`, 'm').exec(await worker.get(MetricsService).render())?.[1] ?? 0,
    );
  const orderWhen = (orderId: string, what: string, done: (o: { status: string }) => boolean) =>
    waitFor(`order ${orderId}: ${what}`, () => orderOf(orderId), { until: (o) => done(o) });
  const deliver = (event: Stripe.Event) => deliverSigned(t.http, stripe, event);
  const processed = (eventId: string) =>
    waitFor(
      `event ${eventId} to be processed`,
      async () =>
        (await t.db.pool.query(`SELECT processed_at FROM webhook_events WHERE id = $1`, [eventId]))
          .rows[0]?.processed_at,
    );
  const count = async (sql: string, params: unknown[]) =>
    (await t.db.pool.query(sql, params)).rows[0].n as number;
  const startPayment = async (orderId: string) => {
    const pay = await t.http.post(
      `/v1/orders/${orderId}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    return pay.body.paymentIntentId as string;
  };
  const paidOrder = async (priceAmount = 10_000, quantity = 1) => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity }]);
    const intent = await startPayment(order.body.id);
    const event = stripe.succeed(intent);
    await deliver(event);
    await orderWhen(order.body.id, 'CONFIRMED', (o) => o.status === 'CONFIRMED');
    return { orderId: order.body.id as string, productId: p, intent };
  };
  /**
   * All of a 10,000 payment refunded in the Stripe dashboard after our refund of it failed: the
   * dashboard one is adopted beside ours, and the order is REFUNDED in full.
   */
  const dashboardRefundInstead = async (orderId: string, intent: string) => {
    const dashboard = stripe.refundFromDashboard(intent, 10_000);
    await deliver(dashboard);
    await processed(dashboard.id);
    const rows = await t.db.pool.query(
      `SELECT reason, status, amount FROM refunds WHERE order_id = $1 ORDER BY created_at`,
      [orderId],
    );
    expect(rows.rows.map((r) => [r.reason, r.status, Number(r.amount)])).toEqual([
      ['requested', 'failed', 10_000],
      ['external', 'succeeded', 10_000],
    ]);
    expect(await orderOf(orderId)).toMatchObject({
      status: 'REFUNDED',
      refunded: { amount: 10_000 },
    });
  };
  const refund = (orderId: string, body: unknown, key = newKey()) =>
    t.http.post(`/v1/admin/orders/${orderId}/refunds`, body, {
      token: admin.accessToken,
      idempotencyKey: key,
    });

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({
      // (ORDER_MINIMUM_AMOUNT below Stripe's own minimum, 50: the payment side's guard is reached too)
      env: stripeEnv(stripe),
    });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    admin = await createAdmin(t);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await stripe?.close();
  });

  it('creates one intent per order with a deterministic key; success → CONFIRMED; 5 deliveries (3 at once) → one effect', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 24900 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const [a, b] = await Promise.all(
      [startPayment(order.body.id), startPayment(order.body.id)].map((x) => x.catch(() => null)),
    );
    const intent = (a ?? b)!;
    expect(await startPayment(order.body.id)).toBe(intent);
    const creates = stripe.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/payment_intents',
    );
    const mine = creates.filter(
      (r) => r.idempotencyKey === `order:${order.body.id}:payment-intent`,
    );
    expect(mine.length).toBeGreaterThanOrEqual(1);
    expect(new Set(mine.map((r) => r.idempotencyKey)).size).toBe(1);
    expect(stripe.intent(intent)).toMatchObject({
      amount: 49800,
      currency: 'inr',
      metadata: { orderId: order.body.id },
    });
    expect(
      await count(`SELECT count(*)::int AS n FROM payments WHERE order_id = $1`, [order.body.id]),
    ).toBe(1);

    const event = stripe.succeed(intent);
    const answers = [
      ...(await Promise.all([deliver(event), deliver(event), deliver(event)])),
      await deliver(event),
      await deliver(event),
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const done = await orderWhen(order.body.id, 'CONFIRMED', (o) => o.status === 'CONFIRMED');
    expect(done.status).toBe('CONFIRMED');
    await worker.get(PaymentFinalizer).processEvent(event.id); // a rerun changes nothing
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 8, reserved: 0 });
    expect(
      await count(
        `SELECT count(*)::int AS n FROM order_status_history WHERE order_id = $1 AND to_status = 'PAID'`,
        [order.body.id],
      ),
    ).toBe(1);
    expect(
      await count(`SELECT count(*)::int AS n FROM webhook_events WHERE id = $1`, [event.id]),
    ).toBe(1);
    expect(done.payment).toMatchObject({
      provider: 'stripe',
      paymentIntentId: intent,
      status: 'succeeded',
    });
  }, 30_000);

  it("with Stripe configured (in development too) the simulated gateway's confirm route does not exist: 404", async () => {
    const res = await t.http.post(
      '/v1/dev/payment-intents/pi_anything/confirm',
      { outcome: 'succeeded' },
      { token: alice.token },
    );
    expect([res.status, res.body.code]).toEqual([404, 'ROUTE_NOT_FOUND']);
  });

  it('Stripe unavailable when a payment starts: 503 with Retry-After (not 500), and the retry with the same key goes through', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const key = newKey();
    stripe.failNext('/v1/payment_intents', 503, 3); // the SDK's own two retries included
    const down = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([down.status, down.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0);
    const again = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect(again.status).toBe(201);
  }, 30_000);

  it("an intent the previous release made under the order's key and never recorded (its metadata named no shop) is the payment's, not a day of 503s (Stripe refuses other parameters under a key)", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 10_000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const made = await new Stripe(stripe.secretKey, {
      host: new URL(stripe.url).hostname,
      port: new URL(stripe.url).port,
      protocol: 'http',
    }).paymentIntents.create(
      {
        amount: order.body.total.amount,
        currency: order.body.total.currency.toLowerCase(),
        metadata: { orderId: order.body.id },
        automatic_payment_methods: { enabled: true },
      },
      { idempotencyKey: `order:${order.body.id}:payment-intent` },
    );
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect([pay.status, pay.body.paymentIntentId]).toEqual([201, made.id]);
    // under the one key, never its next generation: Stripe replayed the intent it had made
    const keys = stripe.requests
      .filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents')
      .map((r) => String(r.idempotencyKey))
      .filter((k) => k.startsWith(`order:${order.body.id}:`));
    expect(new Set(keys)).toEqual(new Set([`order:${order.body.id}:payment-intent`]));
    expect(keys.length).toBeGreaterThanOrEqual(3); // the old release's, ours refused, ours as it sent it
  });

  it("a 500 Stripe saved under the intent's key (replayed to every retry for a day) does not make the order unpayable: the intent is made under the key's next generation, once", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const creates = () =>
      stripe.requests.filter(
        (r) =>
          r.method === 'POST' &&
          r.path === '/v1/payment_intents' &&
          String(r.idempotencyKey ?? '').startsWith(`order:${order.body.id}:payment-intent`),
      );
    stripe.failStored('/v1/payment_intents');
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    const [{ id: shop }] = (await t.db.pool.query(`SELECT id FROM shop_identity`)).rows;
    expect(stripe.intent(pay.body.paymentIntentId as string)?.metadata).toEqual({
      orderId: order.body.id,
      shop,
    });
    // the saved 500 (the SDK's own retries replayed it), then one intent under the next generation
    const keys = creates().map((r) => String(r.idempotencyKey));
    expect(
      keys.filter((k) => k === `order:${order.body.id}:payment-intent`).length,
    ).toBeGreaterThan(0);
    expect(keys.filter((k) => k !== `order:${order.body.id}:payment-intent`)).toEqual([
      `order:${order.body.id}:payment-intent:g2`,
    ]);
    // calling again returns the same intent, never a second one (API.md)
    const again = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect([again.status, again.body.paymentIntentId]).toEqual([201, pay.body.paymentIntentId]);
    expect(creates().filter((r) => String(r.idempotencyKey).endsWith(':g2'))).toHaveLength(1);
  }, 30_000);

  it("a refund whose 500 Stripe saved under its key is made under the key's next generation — once, and never when the failed request made it after all", async () => {
    const refundPosts = (refundId: string) =>
      stripe.requests.filter(
        (r) =>
          r.method === 'POST' &&
          r.path === '/v1/refunds' &&
          String(r.idempotencyKey ?? '').startsWith(`refund:${refundId}`),
      );
    for (const afterEffect of [false, true]) {
      const { orderId, intent } = await paidOrder(10_000);
      stripe.failStored('/v1/refunds', { afterEffect });
      const res = await refund(orderId, {});
      expect(res.status).toBe(201);
      expect(res.body.status).toBe('succeeded');
      const id = res.body.id as string;
      // one refund at Stripe, whichever request made it
      expect(stripe.refundsOf(intent).map((r) => r.metadata?.refundId)).toEqual([id]);
      const keys = [...new Set(refundPosts(id).map((r) => String(r.idempotencyKey)))];
      expect(keys).toEqual(afterEffect ? [`refund:${id}`] : [`refund:${id}`, `refund:${id}:g2`]);
      expect(await orderOf(orderId)).toMatchObject({ status: 'REFUNDED' });
    }
    // a day on, the provider may have forgotten the first key (an attempt under it could then make
    // the refund beside one under the next generation): it stays on the first key, pending — and
    // the stale sweep goes on to the other refunds (a saved failure is about its key alone)
    const stuck = await paidOrder(10_000);
    const other = await paidOrder(10_000);
    stripe.failNext('/v1/refunds', 500, 6); // (both pending: the SDK's own retries fail too)
    const pending = await refund(stuck.orderId, {});
    const waiting = await refund(other.orderId, {});
    expect([pending.body.status, waiting.body.status]).toEqual(['pending', 'pending']);
    const id = pending.body.id as string;
    await t.db.pool.query(
      `UPDATE refunds SET created_at = now() - interval '21 hours', updated_at = now() - interval '2 hours' WHERE id = $1`,
      [id],
    );
    await t.db.pool.query(
      `UPDATE refunds SET updated_at = now() - interval '1 hour' WHERE id = $1`,
      [waiting.body.id],
    );
    stripe.failStored('/v1/refunds');
    expect(await worker.get(RefundsService).retryStale(60_000)).toBe(1); // the other one
    const statuses = await t.db.pool.query(
      `SELECT id, status FROM refunds WHERE id = ANY($1::uuid[])`,
      [[id, waiting.body.id]],
    );
    expect(Object.fromEntries(statuses.rows.map((r) => [r.id, r.status]))).toEqual({
      [id]: 'pending',
      [waiting.body.id as string]: 'succeeded',
    });
    expect(refundPosts(id).some((r) => String(r.idempotencyKey).endsWith(':g2'))).toBe(false);
    // (settled by hand, as a person would: not retried by every later sweep of this file)
    const tx = worker.get(TransactionHost);
    await tx.run(() =>
      worker.get(RefundRepository).settle(id, 'failed', { failure: 'test: cleared' }, new Date()),
    );
  }, 60_000);

  it("an order Stripe cannot charge (nothing to pay, or under its minimum) is 409 ORDER_NOT_PAYABLE, not a 502 — one under Stripe's minimum is cancelled at its first payment start (its stock released once, under concurrent starts and retries too), never held against the customer", async () => {
    // nothing to pay: refused at checkout, before anything is held (ORDER_MINIMUM_AMOUNT)
    const free = await insertProduct(t.db.pool, { stock: 5, priceAmount: 0 });
    const refused = await placeOrder(t.http, alice, [{ productId: free, quantity: 1 }]);
    expect([refused.status, refused.body.code]).toEqual([409, 'ORDER_NOT_PAYABLE']);
    // under Stripe's minimum, where ORDER_MINIMUM_AMOUNT is set lower than it (1 here; the default
    // 50 in a currency whose minimum is higher): checkout takes it, Stripe refuses every intent.
    // A customer allowed one abandoned order a day (the caps on, on the same database)
    const capped = await bootTestApp({
      db: t.db,
      env: {
        ...stripeEnv(stripe),
        PURCHASE_LIMIT_ABANDONED_PER_DAY: '1',
        RATE_LIMIT_ENABLED: 'true',
      },
    });
    try {
      await signInLimitsAnswering(capped.http);
      const [hal] = await buyers(capped.http, 1);
      const pay = (orderId: string, key = newKey()) =>
        capped.http.post(
          `/v1/orders/${orderId}/payment`,
          {},
          { token: hal.token, idempotencyKey: key },
        );
      const createsOf = (orderId: string) =>
        stripe.requests.filter(
          (r) =>
            r.path === '/v1/payment_intents' &&
            r.idempotencyKey === `order:${orderId}:payment-intent`,
        ).length;
      const cancelledOf = async (orderId: string) =>
        (
          await t.db.pool.query(
            `SELECT o.status, o.cancellation_reason AS reason, h.actor,
                    o.payment_start_failed_at IS NOT NULL AS "startFailed",
                    (SELECT count(*)::int FROM payments p WHERE p.order_id = o.id) AS payments
               FROM orders o
               LEFT JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CANCELLED'
              WHERE o.id = $1`,
            [orderId],
          )
        ).rows;
      const cancelledRow = {
        status: 'CANCELLED',
        reason: 'PAYMENT_FAILED',
        actor: 'system:unchargeable-total',
        startFailed: true,
        payments: 0,
      };

      // one start: 3 × 10 (the product's whole stock) — refused by Stripe, the order cancelled
      // there and then, its units back on sale at once (they were held to the deadline)
      const lone = await insertProduct(t.db.pool, { stock: 3, priceAmount: 10 });
      const first = await placeOrder(capped.http, hal, [{ productId: lone, quantity: 3 }]);
      expect(first.status).toBe(201);
      expect(await stockOf(t.db.pool, lone)).toEqual({ onHand: 3, reserved: 3 });
      const key = newKey();
      const answer = await pay(first.body.id, key);
      expectProblem(answer, 409, 'ORDER_NOT_PAYABLE');
      expect(await cancelledOf(first.body.id)).toEqual([cancelledRow]);
      expect(answer.body.detail).toMatch(/amount_too_small.*and is cancelled/);
      expect(await stockOf(t.db.pool, lone)).toEqual({ onHand: 3, reserved: 0 });
      expect(createsOf(first.body.id)).toBe(1);
      // retried — the same key (a 409 is not stored: it runs again), a new one: still 409, the
      // order cancelled, Stripe not asked again, nothing released twice
      for (const again of [key, newKey()]) {
        expectProblem(await pay(first.body.id, again), 409, 'ORDER_NOT_PAYABLE');
      }
      expect(createsOf(first.body.id)).toBe(1);
      expect(await cancelledOf(first.body.id)).toEqual([cancelledRow]);

      // concurrent starts (a double click, a client's retries): one cancel, one release
      const raced = await insertProduct(t.db.pool, { stock: 4, priceAmount: 10 });
      const second = await placeOrder(capped.http, hal, [{ productId: raced, quantity: 4 }]);
      expect(second.status).toBe(201);
      const answers = await Promise.all(Array.from({ length: 4 }, () => pay(second.body.id)));
      for (const a of answers) expectProblem(a, 409, 'ORDER_NOT_PAYABLE');
      expect(await cancelledOf(second.body.id)).toEqual([cancelledRow]);
      expect(await stockOf(t.db.pool, raced)).toEqual({ onHand: 4, reserved: 0 });
      const releases = await t.db.pool.query(
        `SELECT count(*)::int AS n FROM stock_movements WHERE product_id = $1 AND reserved_delta < 0`,
        [raced],
      );
      expect(releases.rows[0].n).toBe(1);
      await drain(worker, t.db.pool);
      await assertStockInvariants(t.db.pool, [lone, raced]);

      // two such orders, an allowance of one abandoned a day: neither counted, the customer
      // orders again — and one the customer abandons counts, as ever
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const next = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
      expect(next.status).toBe(201);
      const cancel = await capped.http.post(
        `/v1/orders/${next.body.id}/cancel`,
        {},
        { token: hal.token, idempotencyKey: newKey() },
      );
      expect(cancel.status).toBe(200);
      const capReached = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
      expect([capReached.status, capReached.body.code]).toEqual([429, 'RATE_LIMITED']);
    } finally {
      await capped.close();
    }
  }, 60_000);

  it('a signed event carrying a NUL or a lone surrogate in a customer-typed field (a billing name) is recorded and processed, not refused forever', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 5_000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    const event = stripe.succeed(intent);
    // PostgreSQL's jsonb refuses the \u0000 escape (22P05): the stored copy must do without it
    // (22P05), and a surrogate without its pair (22P02): the stored copy must do without them
    Object.assign(event.data.object, {
      shipping: {
        name: 'Ann\u0000Lee',
        address: { line1: 'x\u0000', line2: 'a\ud800b', city: '\udc00\ud83d\ude00' },
      },
      metadata: { 'k\u0000': 'v', '\ud83d': 'w' },
    });
    const res = await deliver(event);
    expect(res.status).toBe(200);
    expect(await processed(event.id)).toBeTruthy();
    await orderWhen(order.body.id, 'CONFIRMED', (o) => o.status === 'CONFIRMED');
    const stored = (
      await t.db.pool.query(`SELECT payload FROM webhook_events WHERE id = $1`, [event.id])
    ).rows[0]?.payload;
    expect(stored?.data?.object?.shipping?.name).toBe('Ann\ufffdLee');
    expect(stored?.data?.object?.shipping?.address).toEqual({
      line1: 'x\ufffd',
      line2: 'a\ufffdb',
      city: '\ufffd\ud83d\ude00',
    });
    expect(stored?.data?.object?.metadata).toEqual({ 'k\ufffd': 'v', '\ufffd': 'w' });
  });

  it("a disputed payment holds its order's fulfilment (409) while the dispute is open or lost — a late event never reopens a final one, a lost one is read from Stripe; won, it is fulfilled; each dispute is raised once", async () => {
    const disputedCount = () => workerCounter('payments_disputed_total');
    const before = await disputedCount();
    const fulfil = (orderId: string) =>
      t.http.post(`/v1/admin/orders/${orderId}/fulfil`, {}, { token: admin.accessToken });
    const send = async (event: Stripe.Event) => {
      expect((await deliver(event)).status).toBe(200);
      await processed(event.id);
    };
    const disputeOf = async (intent: string) =>
      (
        await t.db.pool.query(
          `SELECT d.status, d.amount::int AS amount, d.currency, d.reason FROM payment_disputes d
             JOIN payments p ON p.id = d.payment_id WHERE p.intent_id = $1`,
          [intent],
        )
      ).rows;

    // a chargeback opened: the money is gone until it is won — the goods must not leave
    const open = await paidOrder(10_000, 1);
    const opened = stripe.dispute(open.intent, 'needs_response', 'created');
    await send(opened);
    await send(opened); // delivered twice: one dispute, raised once
    const held = await fulfil(open.orderId);
    expectProblem(held, 409, 'ORDER_NOT_FULFILLABLE');
    expect(held.body.detail).toMatch(/disputed .*\(needs_response\)/);
    expect((await orderOf(open.orderId)).status).toBe('CONFIRMED');
    expect(await disputeOf(open.intent)).toEqual([
      { status: 'needs_response', amount: 10_000, currency: 'INR', reason: 'fraudulent' },
    ]);
    // won: the money is back, the order ships
    await send(stripe.dispute(open.intent, 'under_review'));
    await send(stripe.dispute(open.intent, 'won', 'closed'));
    expect((await fulfil(open.orderId)).status).toBe(200);

    // lost, its events out of order: the loss arrives first, the opening late — it stays lost
    const lost = await paidOrder(10_000, 1);
    const opening = stripe.dispute(lost.intent, 'needs_response', 'created');
    await send(stripe.dispute(lost.intent, 'lost', 'closed'));
    await send(opening);
    expect(await disputeOf(lost.intent)).toMatchObject([{ status: 'lost' }]);
    expectProblem(await fulfil(lost.orderId), 409, 'ORDER_NOT_FULFILLABLE');
    // staff and admins see it in the order
    const seen = await t.http.get(`/v1/admin/orders/${lost.orderId}`, {
      token: admin.accessToken,
    });
    expect(seen.body.disputes).toEqual([
      expect.objectContaining({
        status: 'lost',
        amount: { amount: 10_000, currency: 'INR' },
        reason: 'fraudulent',
      }),
    ]);
    expect((await orderOf(lost.orderId)).status).toBe('CONFIRMED');

    // a dispute event whose object is not a readable dispute: processed, nothing recorded
    const odd = await paidOrder(10_000, 1);
    const unreadable = stripe.dispute(odd.intent, 'needs_response', 'created');
    (unreadable.data.object as unknown as { amount: unknown }).amount = 'all of it';
    await send(unreadable);
    expect(await disputeOf(odd.intent)).toEqual([]);
    expect((await fulfil(odd.orderId)).status).toBe(200);

    // a chargeback prevented (the charge refunded instead) is final too: a late event does not
    // reopen it, and it holds nothing (the refund's own events move the order)
    const stopped = await paidOrder(10_000, 1);
    const lateInquiry = stripe.dispute(stopped.intent, 'warning_needs_response', 'created');
    await send(stripe.dispute(stopped.intent, 'prevented', 'closed'));
    await send(lateInquiry);
    expect(await disputeOf(stopped.intent)).toMatchObject([{ status: 'prevented' }]);
    expect((await fulfil(stopped.orderId)).status).toBe(200);

    // their closing events lost: the reconciliation reads a dispute unheard of for 6 hours from
    // Stripe — one won (the order ships), one lost (it stays held)
    const [quiet, gone] = [await paidOrder(10_000, 1), await paidOrder(10_000, 1)];
    for (const { intent } of [quiet, gone]) {
      await send(stripe.dispute(intent, 'needs_response', 'created'));
    }
    stripe.dispute(quiet.intent, 'won', 'closed'); // never delivered
    stripe.dispute(gone.intent, 'lost', 'closed'); // nor this
    const reads = () =>
      stripe.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/v1/disputes/'))
        .length;
    const readBefore = reads();
    await worker.get(PaymentFinalizer).reconcile();
    expect(reads()).toBe(readBefore); // heard of just now: not asked
    expectProblem(await fulfil(quiet.orderId), 409, 'ORDER_NOT_FULFILLABLE');
    await t.db.pool.query(
      `UPDATE payment_disputes SET checked_at = now() - interval '7 hours'
        WHERE payment_id IN (SELECT id FROM payments WHERE intent_id = ANY($1))`,
      [[quiet.intent, gone.intent]],
    );
    await worker.get(PaymentFinalizer).reconcile();
    expect(reads()).toBe(readBefore + 2);
    expect(await disputeOf(quiet.intent)).toMatchObject([{ status: 'won' }]);
    expect(await disputeOf(gone.intent)).toMatchObject([{ status: 'lost' }]);
    expect((await fulfil(quiet.orderId)).status).toBe(200);
    expectProblem(await fulfil(gone.orderId), 409, 'ORDER_NOT_FULFILLABLE');
    await worker.get(PaymentFinalizer).reconcile();
    expect(reads()).toBe(readBefore + 2); // final now: never asked again

    // a dispute being recorded (DisputeRepository#record, its transaction still open) while an
    // admin fulfils: the fulfil waits for it, and is refused
    const racing = await paidOrder(10_000, 1);
    const paymentId = (
      await t.db.pool.query(`SELECT id FROM payments WHERE intent_id = $1`, [racing.intent])
    ).rows[0].id;
    let commit = () => {};
    const committing = new Promise<void>((resolve) => (commit = resolve));
    const recording = worker.get(TransactionHost).run(async () => {
      await worker.get(DisputeRepository).record(
        {
          id: 'dp_racing',
          paymentId,
          status: 'needs_response',
          amount: 10_000,
          currency: 'INR',
          reason: null,
          evidenceDueBy: null,
          readAt: new Date(),
        },
        new Date(),
      );
      await committing;
    });
    let fulfilling: ReturnType<typeof fulfil> | undefined;
    try {
      await waitFor(
        'the dispute to be recorded, not committed',
        async () =>
          (
            await t.db.pool.query(
              `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE c.relname = 'payment_disputes' AND l.mode = 'RowExclusiveLock'
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
            )
          ).rows[0].n,
        { until: (n) => n > 0 },
      );
      fulfilling = fulfil(racing.orderId);
      await waitFor(
        'the fulfil to wait for the payment row',
        async () =>
          (
            await t.db.pool.query(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'`,
            )
          ).rows[0].n,
        { until: (n) => n === 1 },
      );
    } finally {
      commit();
      await recording;
    }
    expectProblem(await fulfilling, 409, 'ORDER_NOT_FULFILLABLE');

    expect((await disputedCount()) - before).toBe(4);
  }, 30_000);

  it('two reads of a dispute committed in the wrong order: the report read first never replaces the later one (a chargeback under review shown as needing an answer, an escalation hidden); the provider asking for evidence again is recorded', async () => {
    const { intent } = await paidOrder(10_000, 1);
    const paymentId = (
      await t.db.pool.query(`SELECT id FROM payments WHERE intent_id = $1`, [intent])
    ).rows[0].id;
    const start = Date.now();
    /** A report of the dispute read from the provider `second` seconds into the test. */
    const record = (id: string, status: string, second: number) =>
      worker.get(TransactionHost).run(() =>
        worker.get(DisputeRepository).record(
          {
            id,
            paymentId,
            status,
            amount: 10_000,
            currency: 'INR',
            reason: null,
            evidenceDueBy: null,
            readAt: new Date(start + second * 1000),
          },
          new Date(),
        ),
      );
    const statusOf = async (id: string) =>
      (await t.db.pool.query(`SELECT status FROM payment_disputes WHERE id = $1`, [id])).rows[0]
        ?.status;
    // a chargeback answered (read at 2 s), then a read from before the answer (1 s) commits
    expect(await record('dp_steps', 'needs_response', 0)).toMatchObject({ first: true });
    expect(await record('dp_steps', 'under_review', 2)).toMatchObject({ status: 'under_review' });
    expect(await record('dp_steps', 'needs_response', 1)).toBeNull();
    expect(await statusOf('dp_steps')).toBe('under_review');
    // the same status read later (3 s): a read of another from before it (2.5 s) is older still
    expect(await record('dp_steps', 'under_review', 3)).toBeNull();
    expect(await record('dp_steps', 'needs_response', 2.5)).toBeNull();
    expect(await statusOf('dp_steps')).toBe('under_review');
    // the provider asks for evidence again (read at 4 s): recorded — a person must answer it
    expect(await record('dp_steps', 'needs_response', 4)).toMatchObject({
      status: 'needs_response',
    });
    // an inquiry escalated to a chargeback, then the inquiry's older read
    await record('dp_escalated', 'warning_under_review', 0);
    expect(await record('dp_escalated', 'needs_response', 2)).toMatchObject({
      status: 'needs_response',
    });
    expect(await record('dp_escalated', 'warning_under_review', 1)).toBeNull();
    expect(await statusOf('dp_escalated')).toBe('needs_response');
    // a final status wins, whenever it was read (the provider never moves one back: a read
    // answered late is still true), and nothing moves it after
    expect(await record('dp_escalated', 'lost', 1.5)).toMatchObject({ status: 'lost' });
    expect(await record('dp_escalated', 'under_review', 5)).toBeNull();
    // a report for another payment does not move the read stamp its reports are ordered by
    await record('dp_other', 'under_review', 0);
    await worker.get(TransactionHost).run(() =>
      worker.get(DisputeRepository).record(
        {
          id: 'dp_other',
          paymentId: '00000000-0000-4000-8000-000000000000',
          status: 'under_review',
          amount: 10_000,
          currency: 'INR',
          reason: null,
          evidenceDueBy: null,
          readAt: new Date(start + 10_000),
        },
        new Date(),
      ),
    );
    expect(await record('dp_other', 'needs_response', 5)).toMatchObject({
      status: 'needs_response',
    });
    // recorded before reads were stamped (status_read_at null): any report replaces its status
    await t.db.pool.query(
      `UPDATE payment_disputes SET status_read_at = NULL WHERE id = 'dp_steps'`,
    );
    expect(await record('dp_steps', 'under_review', -60)).toMatchObject({ status: 'under_review' });
  });

  it("a dispute's evidence deadline is shown to admins and, still unanswered 3 days before it, raised once per deadline — claimed, so two reconciliations raise it once", async () => {
    const remindedCount = () => workerCounter('payments_dispute_deadlines_near_total');
    const send = async (event: Stripe.Event) => {
      expect((await deliver(event)).status).toBe(200);
      await processed(event.id);
    };
    const view = async (orderId: string) =>
      (await t.http.get(`/v1/admin/orders/${orderId}`, { token: admin.accessToken })).body.disputes;
    const inDays = (days: number) => Math.floor(Date.now() / 1000 + days * 24 * 3600);
    const before = await remindedCount();

    // due in 2 days, waiting for evidence: shown, and raised once
    const soon = await paidOrder(10_000, 1);
    const due = inDays(2);
    await send(stripe.dispute(soon.intent, 'needs_response', 'created', due));
    expect(await view(soon.orderId)).toEqual([
      expect.objectContaining({ evidenceDueBy: new Date(due * 1000).toISOString() }),
    ]);
    // answered already (under review), or far off: not raised
    const answered = await paidOrder(10_000, 1);
    await send(stripe.dispute(answered.intent, 'under_review', 'created', inDays(1)));
    const later = await paidOrder(10_000, 1);
    await send(stripe.dispute(later.intent, 'warning_needs_response', 'created', inDays(10)));
    // none given (Stripe's null): shown as unknown, nothing to remind of
    const unset = await paidOrder(10_000, 1);
    await send(stripe.dispute(unset.intent, 'needs_response', 'created', null));
    expect(await view(unset.orderId)).toEqual([expect.objectContaining({ evidenceDueBy: null })]);
    const finalizer = worker.get(PaymentFinalizer);
    await Promise.all([finalizer.reconcile(), finalizer.reconcile()]);
    expect((await remindedCount()) - before).toBe(1);
    await finalizer.reconcile();
    expect((await remindedCount()) - before).toBe(1);

    // an event with a nonsense deadline keeps the one known; a new deadline is raised again
    await send(stripe.dispute(soon.intent, 'needs_response', 'updated', 'tomorrow'));
    expect(await view(soon.orderId)).toEqual([
      expect.objectContaining({ evidenceDueBy: new Date(due * 1000).toISOString() }),
    ]);
    await finalizer.reconcile();
    expect((await remindedCount()) - before).toBe(1);
    const extended = inDays(2.5);
    await send(stripe.dispute(soon.intent, 'needs_response', 'updated', extended));
    expect(await view(soon.orderId)).toEqual([
      expect.objectContaining({ evidenceDueBy: new Date(extended * 1000).toISOString() }),
    ]);
    await finalizer.reconcile();
    expect((await remindedCount()) - before).toBe(2);
    // a late event with the earlier deadline (events come out of order): the later one stays,
    // and nobody is reminded again
    await send(stripe.dispute(soon.intent, 'needs_response', 'updated', due));
    expect(await view(soon.orderId)).toEqual([
      expect.objectContaining({ evidenceDueBy: new Date(extended * 1000).toISOString() }),
    ]);
    await finalizer.reconcile();
    expect((await remindedCount()) - before).toBe(2);

    // the one without a deadline gets one, its event lost — read from Stripe by the recheck: raised
    const nearer = inDays(1);
    stripe.dispute(unset.intent, 'needs_response', 'updated', nearer); // never delivered
    await t.db.pool.query(
      `UPDATE payment_disputes SET checked_at = now() - interval '7 hours'
        WHERE payment_id = (SELECT id FROM payments WHERE intent_id = $1)`,
      [unset.intent],
    );
    await finalizer.reconcile();
    expect(await view(unset.orderId)).toEqual([
      expect.objectContaining({ evidenceDueBy: new Date(nearer * 1000).toISOString() }),
    ]);
    expect((await remindedCount()) - before).toBe(3);

    // one being claimed by another reconciliation (its row locked): this one passes it by, at
    // once, and it is claimed once that one is gone
    const held = await paidOrder(10_000, 1);
    await send(stripe.dispute(held.intent, 'needs_response', 'created', inDays(1)));
    const other = await t.db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(
        `SELECT 1 FROM payment_disputes
          WHERE payment_id = (SELECT id FROM payments WHERE intent_id = $1) FOR UPDATE`,
        [held.intent],
      );
      let waited: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        finalizer.reconcile(),
        new Promise((_, reject) => {
          waited = setTimeout(
            () => reject(new Error('the reconciliation waited for the row')),
            10_000,
          );
        }),
      ]).finally(() => clearTimeout(waited));
      expect((await remindedCount()) - before).toBe(3);
    } finally {
      await other.query('ROLLBACK');
      other.release();
    }
    await finalizer.reconcile();
    expect((await remindedCount()) - before).toBe(4);
  }, 40_000);

  describe('a dispute event is not believed: the dispute is read from Stripe', () => {
    const fulfil = (orderId: string) =>
      t.http.post(`/v1/admin/orders/${orderId}/fulfil`, {}, { token: admin.accessToken });
    const send = async (event: Stripe.Event) => {
      expect((await deliver(event)).status).toBe(200);
      await processed(event.id);
    };
    const disputeOf = async (intent: string) =>
      (
        await t.db.pool.query(
          `SELECT d.status FROM payment_disputes d
             JOIN payments p ON p.id = d.payment_id WHERE p.intent_id = $1`,
          [intent],
        )
      ).rows;
    /** An event signed with our secret that Stripe never sent: `real`'s dispute, in another status. */
    const forged = (real: Stripe.Event, type: string, status: string): Stripe.Event =>
      ({
        ...structuredClone(real),
        id: `${real.id}_forged`,
        type: type as Stripe.Event['type'],
        data: { object: { ...(structuredClone(real.data.object) as Stripe.Dispute), status } },
      }) as Stripe.Event;
    const inDays = (days: number) => Math.floor(Date.now() / 1000 + days * 24 * 3600);

    it('a signed charge.dispute.closed that Stripe contradicts (won, lost) records what Stripe says: the goods do not ship during an open chargeback, and a wrong loss does not hold the order for ever', async () => {
      const open = await paidOrder(10_000, 1);
      const opened = stripe.dispute(open.intent, 'needs_response', 'created');
      await send(opened);
      await send(forged(opened, 'charge.dispute.closed', 'won')); // Stripe: still needs_response
      expect(await disputeOf(open.intent)).toEqual([{ status: 'needs_response' }]);
      expectProblem(await fulfil(open.orderId), 409, 'ORDER_NOT_FULFILLABLE');

      const answered = await paidOrder(10_000, 1);
      const opening = stripe.dispute(answered.intent, 'needs_response', 'created');
      await send(opening);
      stripe.dispute(answered.intent, 'under_review'); // its event not delivered yet
      await send(forged(opening, 'charge.dispute.closed', 'lost')); // Stripe: under_review
      expect(await disputeOf(answered.intent)).toEqual([{ status: 'under_review' }]);
      await send(stripe.dispute(answered.intent, 'won', 'closed'));
      expect(await disputeOf(answered.intent)).toEqual([{ status: 'won' }]);
      expect((await fulfil(answered.orderId)).status).toBe(200);
    }, 30_000);

    it('a late or retried event does not move a dispute back: no false "evidence due" alarm, and a dispute still waiting for evidence is reminded of', async () => {
      const reminded = () => workerCounter('payments_dispute_deadlines_near_total');
      const finalizer = worker.get(PaymentFinalizer);
      await finalizer.reconcile(); // (anything due from earlier tests raised now)
      const before = await reminded();

      // answered (under_review), then the retried `created` of the day before arrives
      const answered = await paidOrder(10_000, 1);
      const created = stripe.dispute(answered.intent, 'needs_response', 'created', inDays(1));
      const updated = stripe.dispute(answered.intent, 'under_review', 'updated', inDays(1));
      await send(updated);
      await send(created);
      expect(await disputeOf(answered.intent)).toEqual([{ status: 'under_review' }]);
      await finalizer.reconcile();
      expect((await reminded()) - before).toBe(0);

      // waiting for evidence, then a late warning_under_review (from its inquiry) arrives
      const waiting = await paidOrder(10_000, 1);
      const inquiry = stripe.dispute(waiting.intent, 'warning_under_review', 'updated', inDays(1));
      await send(stripe.dispute(waiting.intent, 'needs_response', 'updated', inDays(1)));
      await send(inquiry);
      expect(await disputeOf(waiting.intent)).toEqual([{ status: 'needs_response' }]);
      await finalizer.reconcile();
      expect((await reminded()) - before).toBe(1);
    }, 30_000);

    it('a first event naming another payment_intent records the dispute for the payment Stripe says it disputes, and later events keep to it', async () => {
      const [bystander, disputed] = [await paidOrder(10_000, 1), await paidOrder(10_000, 1)];
      const misnamed = stripe.dispute(disputed.intent, 'needs_response', 'created');
      (misnamed.data.object as Stripe.Dispute).payment_intent = bystander.intent;
      await send(misnamed);
      expect(await disputeOf(bystander.intent)).toEqual([]);
      expect(await disputeOf(disputed.intent)).toEqual([{ status: 'needs_response' }]);
      await send(stripe.dispute(disputed.intent, 'under_review'));
      expect(await disputeOf(disputed.intent)).toEqual([{ status: 'under_review' }]);
      expect((await fulfil(bystander.orderId)).status).toBe(200);
      expectProblem(await fulfil(disputed.orderId), 409, 'ORDER_NOT_FULFILLABLE');
    }, 30_000);

    it('Stripe unavailable when a dispute event is processed: the job fails (nothing recorded from the payload) and its retry records what Stripe says then', async () => {
      const unavailable = async () =>
        Number(
          /^payment_provider_calls_total\{operation="retrieve_dispute",outcome="unavailable"\} (\d+)$/m.exec(
            await worker.get(MetricsService).render(),
          )?.[1] ?? 0,
        );
      const order = await paidOrder(10_000, 1);
      const before = await unavailable();
      stripe.failNext('/v1/disputes/', 503, 1_000);
      const opened = stripe.dispute(order.intent, 'needs_response', 'created');
      try {
        expect((await deliver(opened)).status).toBe(200);
        await waitFor('the event job to fail on Stripe', unavailable, {
          until: (n) => n > before,
        });
        await expect(worker.get(PaymentFinalizer).processEvent(opened.id)).rejects.toMatchObject({
          kind: 'unavailable',
        });
        const row = await t.db.pool.query(`SELECT processed_at FROM webhook_events WHERE id = $1`, [
          opened.id,
        ]);
        expect(row.rows[0].processed_at).toBeNull();
        expect(await disputeOf(order.intent)).toEqual([]);
        stripe.dispute(order.intent, 'under_review'); // answered meanwhile (its event not delivered)
      } finally {
        stripe.failNext('/v1/disputes/', 503, 0);
      }
      await processed(opened.id); // the job's retry
      expect(await disputeOf(order.intent)).toEqual([{ status: 'under_review' }]);
      expectProblem(await fulfil(order.orderId), 409, 'ORDER_NOT_FULFILLABLE');
    }, 40_000);
  });

  it('a stale payment_failed after success changes nothing', async () => {
    const { orderId, intent } = await paidOrder();
    const stale = stripe.eventFor('payment_intent.payment_failed', intent);
    await deliver(stale);
    await processed(stale.id);
    expect((await orderOf(orderId)).status).toBe('CONFIRMED');
  }, 30_000);

  it('a declined card cancels the intent and the order (PAYMENT_FAILED), releasing stock once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 3 }]);
    const intent = await startPayment(order.body.id);
    const event = stripe.decline(intent);
    await Promise.all([deliver(event), deliver(event)]);
    const done = await orderWhen(order.body.id, 'CANCELLED', (o) => o.status === 'CANCELLED');
    expect(done).toMatchObject({ status: 'CANCELLED', cancellationReason: 'PAYMENT_FAILED' });
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(stripe.intent(intent)?.status).toBe('canceled');
    const cancels = stripe.requests.filter(
      (r) => r.path === `/v1/payment_intents/${intent}/cancel`,
    );
    // each cancel is a request of its own (no fixed key whose stored answer Stripe would replay)
    expect(new Set(cancels.map((r) => r.idempotencyKey)).size).toBe(cancels.length);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    await assertStockInvariants(t.db.pool, [p]);
  }, 30_000);

  it('a success that overtakes the payment call is recorded from the intent and confirms the order', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 5000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    // the app's create call reached Stripe and the customer paid, but our commit has not happened yet
    const pi = await stripe
      .client()
      .paymentIntents.create(
        { amount: 5000, currency: 'inr', metadata: { orderId: order.body.id } },
        { idempotencyKey: `order:${order.body.id}:payment-intent` },
      );
    const event = stripe.succeed(pi.id);
    await deliver(event);
    const done = await orderWhen(order.body.id, 'CONFIRMED', (o) => o.status === 'CONFIRMED');
    expect(done.status).toBe('CONFIRMED');
    // along the contract's lifecycle only (API.md: no other transition exists)
    expect(
      done.history.map((h: { from: string | null; to: string }) => `${h.from}→${h.to}`),
    ).toEqual([
      'null→CREATED',
      'CREATED→INVENTORY_RESERVED',
      'INVENTORY_RESERVED→PAYMENT_PENDING',
      'PAYMENT_PENDING→PAID',
      'PAID→CONFIRMED',
    ]);
    // …then the payment call returns: the same intent, no second one
    expect(await startPayment(order.body.id)).toBe(pi.id);
    expect(
      await count(`SELECT count(*)::int AS n FROM payments WHERE order_id = $1`, [order.body.id]),
    ).toBe(1);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 0 });
  }, 30_000);

  it('an intent made outside the app — another amount or currency, or no order id of ours — never pays an order', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 5000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const before = (await orderOf(order.body.id)).status;
    // made in the Stripe dashboard, or by another integration on the same account, and paid
    const foreign = [
      { amount: 4999, currency: 'inr', metadata: { orderId: order.body.id } },
      { amount: 5000, currency: 'usd', metadata: { orderId: order.body.id } },
      { amount: 5000, currency: 'inr', metadata: { orderId: 'ORD-123' } },
      {
        amount: 5000,
        currency: 'inr',
        metadata: { orderId: order.body.id.toUpperCase().replace(/-/g, '') },
      },
    ];
    const readsOf = (intent: string) =>
      stripe.requests.filter(
        (r) => r.method === 'GET' && r.path === `/v1/payment_intents/${intent}`,
      ).length;
    for (const params of foreign) {
      const pi = await stripe.client().paymentIntents.create(params);
      const event = stripe.succeed(pi.id);
      expect((await deliver(event)).status).toBe(200);
      await processed(event.id); // settled as "not ours", at once: no job failing and retrying
      // an intent naming no order as ours are named is not even read from Stripe (its event says so)
      if (params.metadata.orderId !== order.body.id) expect(readsOf(pi.id)).toBe(0);
    }
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect((await orderOf(order.body.id)).status).toBe(before);
    expect(
      await count(`SELECT count(*)::int AS n FROM payments WHERE order_id = $1`, [order.body.id]),
    ).toBe(0);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 1 });
    // the order is still paid the normal way, for its own total
    const intent = await startPayment(order.body.id);
    expect(stripe.intent(intent)).toMatchObject({ amount: 5000, currency: 'inr' });
    await deliver(stripe.succeed(intent));
    expect(
      (await orderWhen(order.body.id, 'CONFIRMED', (o) => o.status === 'CONFIRMED')).status,
    ).toBe('CONFIRMED');
  }, 30_000);

  it.each([
    ['its payment recorded', false],
    // as after a start whose transaction died after the intent was made: the event adopts it
    ['its payment not recorded yet', true],
  ])(
    'an intent captured in part (received less than its amount: set to manual capture at the provider) is not confirmed: cancelled, and what was received refunded (%s)',
    async (_case, unrecorded) => {
      const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 5000 });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      const intent = await startPayment(order.body.id);
      if (unrecorded) {
        await t.db.pool.query(`DELETE FROM payments WHERE intent_id = $1`, [intent]);
        await repairOrders(
          t.db.pool,
          `UPDATE orders SET status = 'INVENTORY_RESERVED' WHERE id = $1`,
          [order.body.id],
        );
      }
      // captured for 1,000 of its 5,000: the order was confirmed, and its receipt said 5,000 received
      const event = stripe.succeedInPart(intent, 1000);
      expect((await deliver(event)).status).toBe(200);
      await processed(event.id);
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
      const o = await orderOf(order.body.id);
      expect(o).toMatchObject({ status: 'CANCELLED', cancellationReason: 'PAYMENT_FAILED' });
      expect(o.history.map((h: { to: string }) => h.to)).not.toContain('CONFIRMED');
      expect(stripe.refundsOf(intent).map((r) => r.amount)).toEqual([1000]);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    },
    30_000,
  );

  /**
   * One unit of a new product paid for after the order expired, the bank set up by `bank` before
   * the success is processed: the automatic refund is sent then (its event, jobs drained).
   */
  const paidAfterExpiry = async (priceAmount: number, bank: (intent: string) => void) => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    const event = stripe.succeed(intent);
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [order.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(order.body.id)).toBe(true);
    bank(intent);
    await deliver(event);
    await processed(event.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    const refunds = async () =>
      (
        await t.db.pool.query(
          `SELECT amount::int, status, reason FROM refunds WHERE order_id = $1`,
          [order.body.id],
        )
      ).rows;
    // the keys of the refunds sent for it (one refund asked again by its follow-up: one key)
    const refundKeys = () =>
      new Set(
        stripe.requests
          .filter(
            (r) =>
              r.method === 'POST' && r.path === '/v1/refunds' && r.body.payment_intent === intent,
          )
          .map((r) => r.idempotencyKey),
      );
    return { intent, refunds, refundKeys };
  };

  it('an automatic refund the provider refused is raised for a person once, and never sent again unasked by the refund watch', async () => {
    const paid = await paidAfterExpiry(7000, (intent) => stripe.declineRefunds(intent)); // an empty balance, say
    expect(await paid.refunds()).toEqual([
      { amount: 7000, status: 'failed', reason: 'paid_after_cancel' },
    ]);
    // a person refunds the customer another way; the balance is topped up; hours pass
    stripe.acceptRefunds(paid.intent);
    await t.db.pool.query(
      `UPDATE payments SET refunds_checked_at = now() - interval '7 hours' WHERE intent_id = $1`,
      [paid.intent],
    );
    await worker.get(PaymentFinalizer).reconcile();
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(await paid.refunds()).toEqual([
      { amount: 7000, status: 'failed', reason: 'paid_after_cancel' },
    ]);
    expect(paid.refundKeys().size).toBe(1);
  }, 30_000);

  it('an automatic refund the bank fails later (its event delivered) is raised for a person, and its amount not sent again as a rest', async () => {
    const paid = await paidAfterExpiry(6000, (intent) => stripe.holdRefunds(intent)); // pending at the bank
    const [remote] = (await stripe.client().refunds.list({ payment_intent: paid.intent })).data;
    expect(remote.status).toBe('pending');
    const failed = stripe.settleRefund(remote.id, 'failed');
    await deliver(failed);
    await processed(failed.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(await paid.refunds()).toEqual([
      { amount: 6000, status: 'failed', reason: 'paid_after_cancel' },
    ]);
    expect(paid.refundKeys().size).toBe(1);
  }, 30_000);

  it('paid after expiry while a dashboard refund of it is pending: once that fails, the whole payment is refunded (not blocked by the earlier "too large" refusals)', async () => {
    let dashboardRefund = '';
    const paid = await paidAfterExpiry(8000, (intent) => {
      // staff refund it in the dashboard before we heard of the payment; the bank holds it pending
      const made = stripe.refundFromDashboard(intent, undefined, { pending: true });
      dashboardRefund = (made.data.object as Stripe.Charge).refunds!.data[0].id;
    });
    // ours was refused as more than is left (Stripe counts the pending one); nothing refunded yet
    expect(await paid.refunds()).toEqual([
      { amount: 8000, status: 'failed', reason: 'paid_after_cancel' },
    ]);
    // every event about it meanwhile: no rest is asked while the dashboard's is pending
    const meanwhile = stripe.eventFor('charge.refunded', paid.intent);
    await deliver(meanwhile);
    await processed(meanwhile.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    // the bank fails the dashboard refund: the customer must still get their money back
    const failed = stripe.settleRefund(dashboardRefund, 'failed');
    await deliver(failed);
    await processed(failed.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    const atStripe = (await stripe.client().refunds.list({ payment_intent: paid.intent })).data;
    expect(
      atStripe.filter((r) => r.status === 'succeeded').reduce((sum, r) => sum + r.amount, 0),
    ).toBe(8000);
    expect(await paid.refunds()).toEqual(
      expect.arrayContaining([{ amount: 8000, status: 'succeeded', reason: 'requested' }]),
    );
    // and every event again refunds nothing more
    await worker.get(PaymentFinalizer).processEvent(failed.id);
    await worker.get(RefundsService).recheckWatched();
    expect(
      (await stripe.client().refunds.list({ payment_intent: paid.intent })).data.filter(
        (r) => r.status === 'succeeded',
      ),
    ).toHaveLength(1);
  }, 30_000);

  it('a success after the reservation expired is refunded automatically, once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 7000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const intent = await startPayment(order.body.id);
    const event = stripe.succeed(intent); // the customer paid; the event is late (a slow bank)
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [order.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(order.body.id)).toBe(true);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });

    await Promise.all([deliver(event), deliver(event)]);
    await processed(event.id);
    await worker.get(PaymentFinalizer).processEvent(event.id); // rerun: still one refund
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    const refunds = await t.db.pool.query(
      `SELECT amount::int, status, reason FROM refunds WHERE order_id = $1`,
      [order.body.id],
    );
    expect(refunds.rows).toEqual([
      { amount: 14000, status: 'succeeded', reason: 'paid_after_cancel' },
    ]);
    const atStripe = stripe.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/refunds' && r.body.payment_intent === intent,
    );
    expect(new Set(atStripe.map((r) => r.idempotencyKey)).size).toBe(1);
    const o = await orderOf(order.body.id);
    expect(o).toMatchObject({ status: 'CANCELLED', cancellationReason: 'RESERVATION_EXPIRED' });
    expect(o.payment.refunds).toEqual([
      expect.objectContaining({
        amount: { amount: 14000, currency: 'INR' },
        status: 'succeeded',
        reason: 'paid_after_cancel',
      }),
    ]);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
  }, 30_000);

  it('paid after expiry, and partly refunded in the dashboard before we heard of either: the rest is refunded too, once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 7000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const intent = await startPayment(order.body.id);
    const success = stripe.succeed(intent); // the customer paid; the event is late
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [order.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(order.body.id)).toBe(true);
    const dashboard = stripe.refundFromDashboard(intent, 3000); // staff refund part of it by hand
    await deliver(dashboard);
    await processed(dashboard.id);
    await deliver(success);
    await processed(success.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    const atStripe = (await stripe.client().refunds.list({ payment_intent: intent })).data;
    expect(
      atStripe.filter((r) => r.status === 'succeeded').reduce((sum, r) => sum + r.amount, 0),
    ).toBe(14_000);
    const rows = await t.db.pool.query(
      `SELECT reason, status, amount FROM refunds WHERE order_id = $1 AND status = 'succeeded' ORDER BY amount`,
      [order.body.id],
    );
    expect(rows.rows.map((r) => [r.reason, Number(r.amount)])).toEqual([
      ['external', 3000],
      ['requested', 11_000],
    ]);
    expect((await orderOf(order.body.id)).status).toBe('CANCELLED');
    // every event again: nothing more is refunded
    await worker.get(PaymentFinalizer).processEvent(dashboard.id);
    await worker.get(PaymentFinalizer).processEvent(success.id);
    expect(
      (await stripe.client().refunds.list({ payment_intent: intent })).data.filter(
        (r) => r.status === 'succeeded',
      ),
    ).toHaveLength(2);
  }, 30_000);

  it('a success after expiry whose refund step failed and whose job gave up is still refunded, once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 6000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [order.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(order.body.id)).toBe(true);
    // its cancel job has run already, while the bank debit was processing (it ended intent-open)
    await t.db.pool.query(
      `DELETE FROM outbox WHERE aggregate_id = $1 AND topic = 'order.cancelled'`,
      [order.body.id],
    );
    const event = stripe.succeed(intent); // then the debit succeeded
    // accepted (Stripe never sends it again); its one run meets a database blink at the refund
    // step, and that job then gives up (a long outage): only the inbox row and the database remain
    await t.db.pool.query(
      `INSERT INTO webhook_events (id, type, intent_id, payload, received_at) VALUES ($1, $2, $3, $4, now() - interval '10 minutes')`,
      [event.id, event.type, intent, JSON.stringify(event)],
    );
    const blink = jest
      .spyOn(worker.get(RefundRepository), 'reserve')
      .mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    try {
      await expect(worker.get(PaymentFinalizer).processEvent(event.id)).rejects.toThrow();
    } finally {
      blink.mockRestore();
    }
    // the safety nets run: the reconciliation sweep, then whatever jobs it left
    await worker.get(PaymentFinalizer).reconcile();
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    const rows = await t.db.pool.query(
      `SELECT amount::int, status, reason FROM refunds WHERE order_id = $1`,
      [order.body.id],
    );
    expect(rows.rows).toEqual([{ amount: 6000, status: 'succeeded', reason: 'paid_after_cancel' }]);
    expect((await orderOf(order.body.id)).status).toBe('CANCELLED');
  }, 30_000);

  it('a cancel Stripe refused while the debit was processing is asked again once the debit fails (no stored refusal replayed)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 4000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    stripe.process(intent); // the customer confirmed with a bank debit
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [order.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(order.body.id)).toBe(true);
    expect(await worker.get(PaymentFinalizer).cancelIntentOf(order.body.id)).toMatchObject({
      kind: 'intent-open',
      intentStatus: 'processing',
    });
    // the debit fails: the intent is payable again, and its order is cancelled
    const failed = stripe.decline(intent);
    await deliver(failed);
    await processed(failed.id);
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(stripe.intent(intent)?.status).toBe('canceled');
    expect((await orderOf(order.body.id)).payment.status).toBe('canceled');
  }, 30_000);

  describe('the reservation deadline of an order whose payment has started (asked of Stripe first)', () => {
    const overdue = async (orderId: string) =>
      t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
        [orderId],
      );
    /** One unit of a new product (5 in stock) ordered, its payment started. */
    const paying = async (priceAmount = 10_000) => {
      const p = await insertProduct(t.db.pool, { stock: 5, priceAmount });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      return { p, order, intent: await startPayment(order.body.id) };
    };

    /** The cancelled order's payment refunded in full (its jobs drained), its stock back. */
    const refundedInFull = async (orderId: string, p: string) => {
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
      const refunded = await t.db.pool.query(
        `SELECT amount, status FROM refunds WHERE order_id = $1`,
        [orderId],
      );
      expect(refunded.rows).toEqual([{ amount: '10000', status: 'succeeded' }]);
      expect((await orderOf(orderId)).status).toBe('CANCELLED');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    };

    it('paid just before the deadline, its event not processed yet: the order is paid, not expired and refunded', async () => {
      const { p, order, intent } = await paying(5000);
      stripe.succeed(intent); // at 14:59.8; its webhook is still on its way
      await overdue(order.body.id);
      await worker.get(OverdueOrders).settle(order.body.id);
      const o = await orderOf(order.body.id);
      expect(o.status).toBe('CONFIRMED');
      expect(o.payment.refunds).toEqual([]);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 0 });
    }, 30_000);

    it('not paid: its intent is cancelled at Stripe, then the order expires', async () => {
      const { p, order, intent } = await paying();
      await overdue(order.body.id);
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(true);
      expect(stripe.intent(intent)?.status).toBe('canceled');
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'RESERVATION_EXPIRED',
      });
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    }, 30_000);

    it('a bank debit still processing keeps the order until it settles; its failure then cancels it', async () => {
      const { p, order, intent } = await paying();
      stripe.process(intent);
      await overdue(order.body.id);
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(false);
      expect((await orderOf(order.body.id)).status).toBe('PAYMENT_PENDING');
      expect(stripe.intent(intent)?.status).toBe('processing'); // never asked to cancel a debit in flight
      // the next sweeps leave it to its event (or the stale-payment pass): no call a minute
      const calls = stripe.requests.length;
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(false);
      expect(stripe.requests.length).toBe(calls);
      const failed = stripe.decline(intent);
      await deliver(failed);
      await processed(failed.id);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'PAYMENT_FAILED',
      });
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    }, 30_000);

    it('a bank debit that failed past the deadline (its event not processed yet) does not hand the client secret out again', async () => {
      const { order, intent } = await paying();
      stripe.process(intent);
      await overdue(order.body.id);
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(false); // our record: processing
      stripe.decline(intent); // the debit failed; the intent is payable again at Stripe, its event on its way
      const again = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expectProblem(again, 409, 'ORDER_NOT_PAYABLE');
      expect(again.body.clientSecret).toBeUndefined();
      // and the 409 is true: the secret the client holds from its first call pays nothing now
      expect(stripe.intent(intent)?.status).toBe('canceled');
    }, 30_000);

    it('past the deadline, not paid, its expiry not run yet: the 409 cancels the intent (the secret the client holds pays nothing), and the expiry then ends the order', async () => {
      const { p, order, intent } = await paying();
      await overdue(order.body.id);
      const again = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expectProblem(again, 409, 'ORDER_NOT_PAYABLE');
      expect(stripe.intent(intent)?.status).toBe('canceled');
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(true);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'RESERVATION_EXPIRED',
      });
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    }, 30_000);

    it('paid just before that 409 would have cancelled it: shown as paid, not cancelled', async () => {
      const { order, intent } = await paying();
      stripe.succeed(intent); // its webhook is still on its way
      await overdue(order.body.id);
      const again = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect([again.status, again.body.status]).toEqual([201, 'succeeded']);
      expect(stripe.intent(intent)?.status).toBe('succeeded');
    }, 30_000);

    it('Stripe down: orders without a payment still expire on time; the gateway is asked once per run, not once per order', async () => {
      const p = await insertProduct(t.db.pool, { stock: 10 });
      const paying = await Promise.all(
        [1, 2, 3].map(() => placeOrder(t.http, alice, [{ productId: p, quantity: 1 }])),
      );
      const intents = await Promise.all(paying.map((o) => startPayment(o.body.id)));
      const unpaid = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      // the orders with a payment are the oldest overdue ones, so the sweep meets them first
      for (const [i, o] of paying.entries()) {
        await t.db.pool.query(
          `UPDATE orders SET reservation_expires_at = now() - interval '1 hour' - $2 * interval '1 second' WHERE id = $1`,
          [o.body.id, i],
        );
      }
      await overdue(unpaid.body.id);
      stripe.failNext('/v1/payment_intents', 503, 100);
      const asked = () =>
        stripe.requests.filter((r) =>
          intents.some((i) => r.path.startsWith(`/v1/payment_intents/${i}`)),
        ).length;
      // the worker's own sweep (every minute) asks too: it must not run while this one is counted
      const orders = worker.get<Queue>(getQueueToken(QueueName.Orders));
      await orders.pause();
      await waitFor('no orders job running', () => orders.getActiveCount(), {
        until: (n) => n === 0,
      });
      const before = asked();
      try {
        const job = worker.get(OverdueOrders);
        // the per-order job does not throw (and retry on the orders queue): the sweeper asks later
        await expect(
          job.expireReservation({ orderId: paying[0].body.id }, {} as never),
        ).resolves.toBe(false);
        const afterJob = asked();
        await job.sweep();
        expect(asked() - afterJob).toBeLessThanOrEqual(3); // one call (the SDK's own retries included)
        expect(afterJob - before).toBeLessThanOrEqual(3);
      } finally {
        stripe.failNext('/v1/payment_intents', 503, 0);
        await orders.resume();
      }
      expect(await orderOf(unpaid.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'RESERVATION_EXPIRED',
      });
      for (const o of paying) expect((await orderOf(o.body.id)).status).toBe('PAYMENT_PENDING');
    }, 60_000);

    it('the expiry cancelled the intent and died before the order: the canceled event expires it (RESERVATION_EXPIRED, not PAYMENT_FAILED)', async () => {
      const { p, order, intent } = await paying();
      await overdue(order.body.id);
      await stripe.client().paymentIntents.cancel(intent, { cancellation_reason: 'abandoned' });
      const event = stripe.eventFor('payment_intent.canceled', intent);
      await deliver(event);
      await processed(event.id);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'RESERVATION_EXPIRED',
      });
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    }, 30_000);

    it('an intent Stripe does not know (the key changed to another account): the order expires a day past its deadline, not before; paid in time after all (the key mended), it is refunded', async () => {
      const { p, order, intent } = await paying();
      // Stripe answers 404 resource_missing for the recorded intent
      const vanished = `pi_vanished_${Date.now()}`;
      await t.db.pool.query(`UPDATE payments SET intent_id = $2 WHERE order_id = $1`, [
        order.body.id,
        vanished,
      ]);
      const payment = async () =>
        (await t.db.pool.query(`SELECT status FROM payments WHERE order_id = $1`, [order.body.id]))
          .rows[0].status as string;
      const pastDeadline = (interval: string) =>
        t.db.pool.query(
          `UPDATE orders SET reservation_expires_at = now() - $2::interval WHERE id = $1`,
          [order.body.id, interval],
        );
      // within its window: left as it is
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(false);
      await t.db.pool.query(
        `UPDATE payments SET updated_at = now() - interval '1 hour' WHERE order_id = $1`,
        [order.body.id],
      );
      await worker.get(PaymentFinalizer).reconcile();
      // past it, but within the day: still waited for — a wrong key deployed for a while makes
      // every intent unknown, and an order paid in time in the right account must not expire
      await pastDeadline('23 hours');
      await expect(worker.get(OverdueOrders).settle(order.body.id)).rejects.toThrow();
      await expect(worker.get(PaymentFinalizer).cancelIntentOf(order.body.id)).rejects.toThrow();
      expect((await orderOf(order.body.id)).status).toBe('PAYMENT_PENDING');
      expect(await payment()).toBe('requires_payment_method');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 1 });
      // a day past it: the intent is taken as cancelled (nothing can be charged under it through
      // this account) and the order expires, its stock released — it used to fail every sweep for good
      await pastDeadline('25 hours');
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(true);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'RESERVATION_EXPIRED',
      });
      expect(await payment()).toBe('canceled');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
      // its intent-cancel job (queued by the expiry) and the sweeps find nothing left to do
      await expect(
        worker.get(PaymentFinalizer).cancelIntentOf(order.body.id),
      ).resolves.toMatchObject({ kind: 'nothing-to-cancel' });
      // the key is mended, and the intent was paid in time in the right account: the provider's
      // success outranks the "canceled" we assumed — recorded, and the money refunded in full
      await t.db.pool.query(`UPDATE payments SET intent_id = $2 WHERE order_id = $1`, [
        order.body.id,
        intent,
      ]);
      const paid = stripe.succeed(intent);
      await deliver(paid);
      await processed(paid.id);
      expect(await payment()).toBe('succeeded');
      await refundedInFull(order.body.id, p);
    }, 30_000);

    it('an event about a payment whose intent Stripe does not know (a wrong key) is asked again every 6 hours past its first day, so a success paid in time is still refunded once the key is mended; given up (processed, raised) after 30 days', async () => {
      const { p, order, intent } = await paying();
      const vanished = `pi_vanished_${Date.now()}`;
      const setIntent = async (id: string) => {
        await t.db.pool.query(`UPDATE payments SET intent_id = $2 WHERE order_id = $1`, [
          order.body.id,
          id,
        ]);
        await t.db.pool.query(
          `UPDATE webhook_events SET intent_id = $2 WHERE id = ANY($1) AND intent_id IS NOT NULL`,
          [[young], id],
        );
      };
      const [old, young] = [`evt_old_${Date.now()}`, `evt_young_${Date.now()}`];
      for (const [id, age] of [
        [old, '31 days'],
        [young, '25 hours'],
      ]) {
        await t.db.pool.query(
          `INSERT INTO webhook_events (id, type, intent_id, payload, received_at)
           VALUES ($1, 'payment_intent.succeeded', $2, '{}', now() - $3::interval)`,
          [id, vanished, age],
        );
      }
      await setIntent(vanished);
      // the customer paid in time; the wrong key cannot see it, and the order expires a day past
      // its deadline, its payment taken for cancelled
      stripe.succeed(intent);
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '25 hours' WHERE id = $1`,
        [order.body.id],
      );
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(true);
      const errors = jest.spyOn(Logger.prototype, 'error');
      await worker.get(PaymentFinalizer).reconcile();
      const events = async () =>
        (
          await t.db.pool.query<{ id: string; processed: boolean; later: boolean }>(
            `SELECT id, processed_at IS NOT NULL AS processed, swept_at > now() + interval '5 hours' AS later
               FROM webhook_events WHERE id = ANY($1) ORDER BY id`,
            [[old, young]],
          )
        ).rows;
      expect(await events()).toEqual([
        { id: old, processed: true, later: null },
        { id: young, processed: false, later: true },
      ]);
      expect(errors).toHaveBeenCalledWith(
        expect.stringContaining(`webhook event ${old} (payment_intent.succeeded) given up`),
      );
      errors.mockRestore();
      // the key is mended; six hours on, the event is asked again: the success is recorded over
      // the "canceled" we assumed, and the money refunded in full
      await setIntent(intent);
      await t.db.pool.query(
        `UPDATE webhook_events SET swept_at = now() - interval '10 minutes' WHERE id = $1`,
        [young],
      );
      await worker.get(PaymentFinalizer).reconcile();
      expect((await events())[1]).toMatchObject({ id: young, processed: true });
      await refundedInFull(order.body.id, p);
    }, 30_000);

    it('not due yet (a job that ran early): nothing is asked of Stripe, nothing changes', async () => {
      const { order, intent } = await paying();
      expect(await worker.get(OverdueOrders).settle(order.body.id)).toBe(false);
      expect(stripe.intent(intent)?.status).toBe('requires_payment_method');
      expect((await orderOf(order.body.id)).status).toBe('PAYMENT_PENDING');
    }, 30_000);
  });

  it('cancelling an order cancels its intent at Stripe, so it can no longer be paid', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    const cancelled = await t.http.post(
      `/v1/orders/${order.body.id}/cancel`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(cancelled.status).toBe(200);
    await waitFor('the intent cancelled at Stripe', () => stripe.intent(intent), {
      until: (i) => i?.status === 'canceled',
    });
    const cancels = stripe.requests.filter(
      (r) => r.path === `/v1/payment_intents/${intent}/cancel`,
    );
    expect(cancels.length).toBeGreaterThanOrEqual(1);
    // our record follows once the worker has the gateway's answer
    const o = await orderWhen(
      order.body.id,
      'payment canceled',
      (x) => (x as { payment?: { status: string } }).payment?.status === 'canceled',
    );
    expect(o.payment.status).toBe('canceled');
  }, 30_000);

  it('cancelled while its payment was starting (the intent being made at Stripe): 409 ORDER_NOT_PAYABLE, no client secret, the intent cancelled at once, stock released', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const gateway = t.app.get<symbol, PaymentGateway>(PAYMENT_GATEWAY);
    const create = gateway.createIntent.bind(gateway);
    let answer!: () => void;
    const held = new Promise<void>((resolve) => (answer = resolve));
    let asked!: () => void;
    const reached = new Promise<void>((resolve) => (asked = resolve));
    let intent = '';
    const spy = jest.spyOn(gateway, 'createIntent').mockImplementation(async (input) => {
      const made = await create(input); // made at Stripe …
      intent = made.id;
      asked();
      await held; // … its answer on the way while the customer cancels
      return made;
    });
    try {
      const paying = t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      await reached;
      const cancelled = await t.http.post(
        `/v1/orders/${order.body.id}/cancel`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect(cancelled.status).toBe(200);
      answer();
      const pay = await paying;
      expectProblem(pay, 409, 'ORDER_NOT_PAYABLE');
      expect(pay.body.clientSecret).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
    expect(stripe.intent(intent)?.status).toBe('canceled'); // by the payment call itself, before it answered
    expect(await orderOf(order.body.id)).toMatchObject({ status: 'CANCELLED' });
    await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    await assertStockInvariants(t.db.pool, [p]);
  }, 30_000);

  it("paid just before the cancel, and the refund step failed once: the cancel job's rerun still refunds, once", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 3000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    stripe.succeed(intent); // the customer paid; its webhook is lost
    // the refund's first step fails (the database blinked) after the success was committed
    const refunds = worker.get(RefundsService);
    const failOnce = jest
      .spyOn(refunds, 'refundPaidAfterCancel')
      .mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    try {
      const cancelled = await t.http.post(
        `/v1/orders/${order.body.id}/cancel`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect(cancelled.status).toBe(200);
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW); // the cancel job ran (and failed once, and was retried)
      expect(failOnce).toHaveBeenCalled();
      // whether the queue's retry or this rerun does it, the money goes back, once
      await worker.get(PaymentFinalizer).cancelIntentOf(order.body.id);
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
    } finally {
      failOnce.mockRestore();
    }
    const rows = await t.db.pool.query(
      `SELECT amount::int, status, reason FROM refunds WHERE order_id = $1`,
      [order.body.id],
    );
    expect(rows.rows).toEqual([{ amount: 3000, status: 'succeeded', reason: 'paid_after_cancel' }]);
    expect((await orderOf(order.body.id)).status).toBe('CANCELLED');
  }, 30_000);

  it('a cancelled order whose intent-cancel job was lost: the reconciliation cancels the intent, so it can no longer be paid', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    // cancelled, but its payments.cancel-intent job gave up (Stripe down for longer than its
    // retries) or was lost with Redis: the order says CANCELLED, the intent is still payable
    await repairOrders(
      t.db.pool,
      `UPDATE orders SET status = 'CANCELLED', cancellation_reason = 'CUSTOMER_REQUESTED' WHERE id = $1`,
      [order.body.id],
    );
    await t.db.pool.query(
      `UPDATE payments SET updated_at = now() - interval '1 hour' WHERE order_id = $1`,
      [order.body.id],
    );
    expect(stripe.intent(intent)?.status).toBe('requires_payment_method');
    await worker.get(PaymentFinalizer).reconcile();
    expect(stripe.intent(intent)?.status).toBe('canceled');
    expect((await orderOf(order.body.id)).payment.status).toBe('canceled');
  }, 30_000);

  it("a payment's recorded status never moves out of succeeded (a slower worker's stale read)", async () => {
    const { orderId } = await paidOrder();
    const payments = worker.get(PaymentRepository);
    const payment = (await payments.findByOrder(orderId))!;
    await payments.setStatus(payment.id, 'processing', new Date());
    expect((await payments.findByOrder(orderId))!.status).toBe('succeeded');
  }, 30_000);

  it('a payment event whose provider call hangs does not hold the next ones: another order is confirmed meanwhile', async () => {
    const place = async () => {
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      return { orderId: order.body.id as string, intent: await startPayment(order.body.id) };
    };
    const [slow, quick] = [await place(), await place()];
    // the first event's job asks Stripe for its intent and gets no answer (until the SDK's timeout)
    const hung = stripe.hangAfterEffect(`/v1/payment_intents/${slow.intent}`, 'GET');
    await deliver(stripe.succeed(slow.intent));
    await hung;
    await deliver(stripe.succeed(quick.intent));
    // one job at a time, the second waited for the first's timeout and retry (the first confirmed first)
    await orderWhen(quick.orderId, 'CONFIRMED', (o) => o.status === 'CONFIRMED');
    expect((await orderOf(slow.orderId)).status).toBe('PAYMENT_PENDING');
    await orderWhen(
      slow.orderId,
      'CONFIRMED once the SDK retries',
      (o) => o.status === 'CONFIRMED',
    );
  }, 40_000);

  it('reconciliation finalizes a payment whose webhook never arrives', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const intent = await startPayment(order.body.id);
    stripe.succeed(intent); // the event is never delivered
    await t.db.pool.query(
      `UPDATE payments SET updated_at = now() - interval '1 hour' WHERE intent_id = $1`,
      [intent],
    );
    expect(await worker.get(PaymentFinalizer).reconcile()).toBeGreaterThanOrEqual(1);
    expect((await orderOf(order.body.id)).status).toBe('CONFIRMED');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 0 });
  }, 30_000);

  describe('refunds', () => {
    it('partial then full; then nothing remains (409); replaying a key refunds once', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const key = newKey();
      const first = await refund(orderId, { amount: { amount: 2500, currency: 'INR' } }, key);
      expect(first.status).toBe(201);
      expect(first.body).toMatchObject({
        orderId,
        amount: { amount: 2500, currency: 'INR' },
        status: 'succeeded',
        reason: 'requested',
      });
      const replay = await refund(orderId, { amount: { amount: 2500, currency: 'INR' } }, key);
      expect(replay.status).toBe(201);
      expect(replay.body.id).toBe(first.body.id);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 2500 },
      });

      const rest = await refund(orderId, {});
      expect(rest.status).toBe(201);
      expect(rest.body.amount.amount).toBe(7500);
      const o = await orderOf(orderId);
      expect(o).toMatchObject({ status: 'REFUNDED', refunded: { amount: 10_000 } });
      expect(o.payment.refunded).toEqual({ amount: 10_000, currency: 'INR' });
      const more = await refund(orderId, { amount: { amount: 1, currency: 'INR' } });
      expect(more.status).toBe(409);
      expect(more.body.code).toBe('REFUND_EXCEEDS_CAPTURED');
      const atStripe = stripe.requests.filter(
        (r) => r.path === '/v1/refunds' && r.method === 'POST' && r.body.payment_intent === intent,
      );
      expect(new Set(atStripe.map((r) => r.idempotencyKey)).size).toBe(2);
    }, 30_000);

    it('concurrent refunds never exceed the captured amount', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const answers = await Promise.all(
        Array.from({ length: 10 }, () =>
          refund(orderId, { amount: { amount: 3000, currency: 'INR' } }),
        ),
      );
      const ok = answers.filter((a) => a.status === 201);
      expect(ok).toHaveLength(3);
      expect(
        answers
          .filter((a) => a.status === 409)
          .every((a) => a.body.code === 'REFUND_EXCEEDS_CAPTURED'),
      ).toBe(true);
      expect(answers.filter((a) => a.status !== 201 && a.status !== 409)).toEqual([]);
      const sum = await t.db.pool.query(
        `SELECT (SELECT coalesce(sum(amount), 0)::int FROM refunds WHERE order_id = $1 AND status = 'succeeded') AS refunds,
                (SELECT refunded_amount::int FROM orders WHERE id = $1) AS on_order,
                (SELECT refund_reserved::int FROM payments WHERE order_id = $1) AS reserved`,
        [orderId],
      );
      expect(sum.rows[0]).toEqual({ refunds: 9000, on_order: 9000, reserved: 9000 });
      const list = await stripe.client().refunds.list({ payment_intent: intent });
      expect(list.data.reduce((s, r) => s + r.amount, 0)).toBe(9000);
      expect((await orderOf(orderId)).status).toBe('PARTIALLY_REFUNDED');
    }, 30_000);

    it('one Idempotency-Key sent 10 times at once: one refund; twins get 409 IN_USE or the replay', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const key = newKey();
      const body = { amount: { amount: 1000, currency: 'INR' } };
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => refund(orderId, body, key)),
      );
      const ok = answers.filter((a) => a.status === 201);
      expect(ok.length).toBeGreaterThanOrEqual(1);
      expect(new Set(ok.map((a) => a.body.id)).size).toBe(1);
      expect(
        answers
          .filter((a) => a.status !== 201)
          .every((a) => a.status === 409 && a.body.code === 'IDEMPOTENCY_KEY_IN_USE'),
      ).toBe(true);
      const list = await stripe.client().refunds.list({ payment_intent: intent });
      expect(list.data.map((r) => r.amount)).toEqual([1000]);
      const reused = await refund(orderId, { amount: { amount: 2000, currency: 'INR' } }, key);
      expect([reused.status, reused.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    }, 30_000);

    /** The key's lock as a request that is still running holds it (released: that request is gone). */
    const holdKey = (key: string) => holdIdempotencyKey(t.db.pool, `user:${admin.user.id}`, key);

    it('a claim blocks twins while its request runs; once that request is gone the retry takes over at once, continuing the same refund', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const key = newKey();
      const body = { amount: { amount: 1500, currency: 'INR' } };
      // the first attempt reserved the refund and reached Stripe, and is still running
      const first = await refund(orderId, body, key);
      await t.db.pool.query(
        `UPDATE idempotency_keys SET state = 'in_progress', response_status = NULL, response_body = NULL, response_body_hash = NULL WHERE key = $1`,
        [key],
      );
      const running = await holdKey(key);
      const blocked = await refund(orderId, body, key);
      expect([blocked.status, blocked.body.code]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);
      await running.release(); // its process died: PostgreSQL ended its session and the lock
      const retried = await refund(orderId, body, key);
      expect(retried.status).toBe(201);
      expect(retried.body.id).toBe(first.body.id);
      const list = await stripe.client().refunds.list({ payment_intent: intent });
      expect(list.data.map((r) => r.amount)).toEqual([1500]);
      expect((await orderOf(orderId)).refunded.amount).toBe(1500);
    }, 30_000);

    it('one key on a provider route and then on a transactional route: 409 while in progress, 422 after', async () => {
      const { orderId } = await paidOrder(10_000, 1);
      const key = newKey();
      const first = await refund(orderId, { amount: { amount: 500, currency: 'INR' } }, key);
      expect(first.status).toBe(201);
      await t.db.pool.query(`UPDATE idempotency_keys SET state = 'in_progress' WHERE key = $1`, [
        key,
      ]);
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const running = await holdKey(key);
      const busy = await t.http.post(
        '/v1/orders',
        { items: [{ productId: p, quantity: 1 }] },
        { token: admin.accessToken, idempotencyKey: key },
      );
      expect([busy.status, busy.body.code]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);
      await t.db.pool.query(`UPDATE idempotency_keys SET state = 'completed' WHERE key = $1`, [
        key,
      ]);
      await running.release();
      const reused = await t.http.post(
        '/v1/orders',
        { items: [{ productId: p, quantity: 1 }] },
        { token: admin.accessToken, idempotencyKey: key },
      );
      expect([reused.status, reused.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    }, 30_000);

    it('validates the request: unknown order 404, unpaid order 409, bad amount 400, customer 403', async () => {
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const unpaid = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      expect((await refund('00000000-0000-4000-8000-000000000000', {})).status).toBe(404);
      const notPaid = await refund(unpaid.body.id, {});
      expect([notPaid.status, notPaid.body.code]).toEqual([409, 'ORDER_NOT_REFUNDABLE']);
      expect(
        (await refund(unpaid.body.id, { amount: { amount: 0, currency: 'INR' } })).status,
      ).toBe(400);
      // an amount in another currency than the one the order was paid in: 400 naming the field
      const { orderId: paidId } = await paidOrder(5_000, 1);
      const usd = await refund(paidId, { amount: { amount: 10, currency: 'USD' } });
      expect([usd.status, usd.body.code, usd.body.errors]).toEqual([
        400,
        'VALIDATION_FAILED',
        [{ field: 'amount.currency', message: 'must be INR' }],
      ]);
      expect(
        await count(`SELECT count(*)::int AS n FROM refunds WHERE order_id = $1`, [paidId]),
      ).toBe(0);
      const asCustomer = await t.http.post(
        `/v1/admin/orders/${unpaid.body.id}/refunds`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect(asCustomer.status).toBe(403);
      expect(
        (
          await t.http.post(
            `/v1/admin/orders/${unpaid.body.id}/refunds`,
            {},
            { token: admin.accessToken },
          )
        ).status,
      ).toBe(400);
    }, 30_000);

    it('a provider outage leaves the refund pending; the retry uses the same key and refunds once', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.failNext('/v1/refunds', 500, 3); // the SDK's own two retries fail too
      const first = await refund(orderId, { amount: { amount: 4000, currency: 'INR' } });
      expect(first.status).toBe(201);
      expect(first.body.status).toBe('pending');
      expect((await orderOf(orderId)).status).toBe('CONFIRMED');
      await t.db.pool.query(
        `UPDATE refunds SET updated_at = now() - interval '1 hour' WHERE id = $1`,
        [first.body.id],
      );
      expect(await worker.get(RefundsService).retryStale(60_000)).toBe(1);
      const o = await orderOf(orderId);
      expect(o).toMatchObject({ status: 'PARTIALLY_REFUNDED', refunded: { amount: 4000 } });
      const list = await stripe.client().refunds.list({ payment_intent: intent });
      expect(list.data.map((r) => r.amount)).toEqual([4000]);
      const keys = stripe.requests
        .filter(
          (r) =>
            r.path === '/v1/refunds' && r.method === 'POST' && r.body.payment_intent === intent,
        )
        .map((r) => r.idempotencyKey);
      expect(new Set(keys)).toEqual(new Set([`refund:${first.body.id}`]));
    }, 30_000);

    it('a refund declined by the bank is failed and its amount becomes refundable again', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.declineRefunds(intent);
      const declined = await refund(orderId, {});
      expect(declined.status).toBe(502);
      expect(declined.body.code).toBe('PAYMENT_PROVIDER_REJECTED');
      expect(
        (
          await t.db.pool.query(
            `SELECT refund_reserved::int AS r FROM payments WHERE intent_id = $1`,
            [intent],
          )
        ).rows[0].r,
      ).toBe(0);
      expect((await orderOf(orderId)).status).toBe('CONFIRMED');
    }, 30_000);

    it('a retry with the same key after the provider refused (502) runs afresh, as a new provider request (API.md)', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.declineRefunds(intent);
      const key = newKey();
      const declined = await refund(orderId, {}, key);
      expect([declined.status, declined.body.code]).toEqual([502, 'PAYMENT_PROVIDER_REJECTED']);
      stripe.acceptRefunds(intent); // the admin sorted it out with the bank
      const retried = await refund(orderId, {}, key);
      expect([retried.status, retried.body.status]).toEqual([201, 'succeeded']);
      expect(retried.headers.get('idempotent-replayed')).toBeNull();
      const replay = await refund(orderId, {}, key); // from now on, the stored answer
      expect([replay.status, replay.body.id, replay.headers.get('idempotent-replayed')]).toEqual([
        201,
        retried.body.id,
        'true',
      ]);
      const rows = await t.db.pool.query(
        `SELECT status FROM refunds WHERE order_id = $1 ORDER BY created_at`,
        [orderId],
      );
      expect(rows.rows.map((r) => r.status)).toEqual(['failed', 'succeeded']);
      const keys = stripe.requests
        .filter(
          (r) =>
            r.path === '/v1/refunds' && r.method === 'POST' && r.body.payment_intent === intent,
        )
        .map((r) => r.idempotencyKey);
      expect(new Set(keys).size).toBe(2); // Stripe would replay its stored refusal to the first key
      expect(await orderOf(orderId)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
    }, 30_000);

    it('a key whose refund the provider refused (502, nothing stored) is free for a refund of another order', async () => {
      const a = await paidOrder(10_000, 1);
      const b = await paidOrder(10_000, 1);
      stripe.declineRefunds(a.intent);
      const key = newKey();
      expect((await refund(a.orderId, {}, key)).status).toBe(502);
      const other = await refund(b.orderId, {}, key);
      expect([other.status, other.body.status, other.body.code]).toEqual([
        201,
        'succeeded',
        undefined,
      ]);
      expect(await orderOf(b.orderId)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
      expect((await orderOf(a.orderId)).status).toBe('CONFIRMED');
    }, 30_000);

    it("an admin's refund answered pending that the bank then fails is raised (requested_refunds_failed_total) and shown failed in the admin's view of the order", async () => {
      const failedCount = () => workerCounter('requested_refunds_failed_total');
      const before = await failedCount();
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.holdRefunds(intent);
      const pending = await refund(orderId, { amount: { amount: 2000, currency: 'INR' } });
      expect([pending.status, pending.body.status]).toEqual([201, 'pending']);
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      const failed = stripe.settleRefund(remote.id, 'failed');
      await deliver(failed);
      await processed(failed.id);
      expect((await failedCount()) - before).toBe(1);
      const seen = await t.http.get(`/v1/admin/orders/${orderId}`, { token: admin.accessToken });
      expect(seen.status).toBe(200);
      expect(seen.body.status).toBe('CONFIRMED');
      expect(seen.body.payment.refunds).toEqual([
        expect.objectContaining({ id: pending.body.id, status: 'failed' }),
      ]);
    }, 30_000);

    it('a refund pending at Stripe is checked, not re-sent, and settles from the refund event', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.holdRefunds(intent);
      const first = await refund(orderId, { amount: { amount: 2000, currency: 'INR' } });
      expect([first.status, first.body.status]).toEqual([201, 'pending']);
      await t.db.pool.query(
        `UPDATE refunds SET updated_at = now() - interval '1 hour' WHERE id = $1`,
        [first.body.id],
      );
      expect(await worker.get(RefundsService).retryStale(60_000)).toBe(0); // still pending at Stripe
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW); // and its follow-up job has looked too
      const followUp = await worker
        .get<Queue>(getQueueToken(QueueName.Payments))
        .getJob(settleRefundJobId(first.body.id));
      expect(followUp?.finishedOn).toBeDefined();
      const creates = stripe.requests.filter(
        (r) => r.method === 'POST' && r.path === '/v1/refunds' && r.body.payment_intent === intent,
      );
      expect(creates).toHaveLength(1); // read, not asked again
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      const event = stripe.settleRefund(remote.id);
      await deliver(event);
      await processed(event.id);
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 2000 },
      });
    }, 30_000);

    it('an order whose full refund is still pending at Stripe is not fulfilled (409) — the goods would leave with the money returned; once the refund settles it is REFUNDED; a partial one pending does not hold it', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.holdRefunds(intent);
      const fulfil = () =>
        t.http.post(`/v1/admin/orders/${orderId}/fulfil`, {}, { token: admin.accessToken });
      const pending = await refund(orderId, {});
      expect([pending.status, pending.body.status]).toEqual([201, 'pending']);
      const refused = await fulfil();
      expect([refused.status, refused.body.code]).toEqual([409, 'ORDER_NOT_FULFILLABLE']);
      expect(refused.body.detail).toMatch(/would return this order's whole total/);
      expect((await orderOf(orderId)).status).toBe('CONFIRMED');
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      const event = stripe.settleRefund(remote.id);
      await deliver(event);
      await processed(event.id);
      expect(await orderOf(orderId)).toMatchObject({ status: 'REFUNDED' });
      const after = await fulfil();
      expect([after.status, after.body.detail]).toEqual([
        409,
        'An order in REFUNDED cannot be fulfilled.',
      ]);
      // a partial refund pending does not hold the shipment: fulfilled, then partly refunded
      const partly = await paidOrder(10_000, 1);
      stripe.holdRefunds(partly.intent);
      const credit = await refund(partly.orderId, { amount: { amount: 1000, currency: 'INR' } });
      expect([credit.status, credit.body.status]).toEqual([201, 'pending']);
      const shippedFirst = await t.http.post(
        `/v1/admin/orders/${partly.orderId}/fulfil`,
        {},
        { token: admin.accessToken },
      );
      expect([shippedFirst.status, shippedFirst.body.status]).toEqual([200, 'FULFILLED']);
      const [partial] = (await stripe.client().refunds.list({ payment_intent: partly.intent }))
        .data;
      const settled = stripe.settleRefund(partial.id);
      await deliver(settled);
      await processed(settled.id);
      expect(await orderOf(partly.orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 1000 },
      });
      // a full refund made in the dashboard and still pending at the bank holds it too (recorded
      // only once it succeeds: counted from the refund list its event has the worker read) …
      const byHand = await paidOrder(10_000, 1);
      const dashboard = stripe.refundFromDashboard(byHand.intent, 10_000, { pending: true });
      await deliver(dashboard);
      await processed(dashboard.id);
      const held = await t.http.post(
        `/v1/admin/orders/${byHand.orderId}/fulfil`,
        {},
        { token: admin.accessToken },
      );
      expect([held.status, held.body.code]).toEqual([409, 'ORDER_NOT_FULFILLABLE']);
      // a sync that read the list before that refund, finishing last, does not undo the figure
      const { rows } = await t.db.pool.query<{ id: string; pending: string }>(
        `SELECT id, provider_refunds_pending AS pending FROM payments WHERE order_id = $1`,
        [byHand.orderId],
      );
      expect(rows[0].pending).toBe('10000');
      await worker
        .get(PaymentRepository)
        .noteProviderPending(rows[0].id, new Date(Date.now() - 60_000), 0);
      const again = await t.http.post(
        `/v1/admin/orders/${byHand.orderId}/fulfil`,
        {},
        { token: admin.accessToken },
      );
      expect([again.status, again.body.code]).toEqual([409, 'ORDER_NOT_FULFILLABLE']);
      // … until the bank fails it: then the order ships
      const [dashboardRefund] = (
        await stripe.client().refunds.list({ payment_intent: byHand.intent })
      ).data;
      const returned = stripe.settleRefund(dashboardRefund.id, 'failed');
      await deliver(returned);
      await processed(returned.id);
      const shippedAfter = await t.http.post(
        `/v1/admin/orders/${byHand.orderId}/fulfil`,
        {},
        { token: admin.accessToken },
      );
      expect([shippedAfter.status, shippedAfter.body.status]).toEqual([200, 'FULFILLED']);
      // a refund that failed leaves the order fulfillable
      const other = await paidOrder(10_000, 1);
      await insertRefund(t.db.pool, {
        orderId: other.orderId,
        amount: 100,
        status: 'failed',
        failure: 'declined',
      });
      const shipped = await t.http.post(
        `/v1/admin/orders/${other.orderId}/fulfil`,
        {},
        { token: admin.accessToken },
      );
      expect([shipped.status, shipped.body.status]).toEqual([200, 'FULFILLED']);
    }, 30_000);

    it('a refund we recorded as failed but Stripe made is reinstated from the refund list', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const ours = await refund(orderId, { amount: { amount: 1000, currency: 'INR' } });
      // as if its answer had been misread as a refusal: failed, reservation released, order untouched
      await t.db.pool.query(
        `WITH r AS (UPDATE refunds SET status = 'failed', failure = 'misread' WHERE id = $1 RETURNING payment_id, amount)
         UPDATE payments p SET refund_reserved = p.refund_reserved - r.amount FROM r WHERE p.id = r.payment_id`,
        [ours.body.id],
      );
      await repairOrders(
        t.db.pool,
        `UPDATE orders SET refunded_amount = 0, status = 'CONFIRMED' WHERE id = $1`,
        [orderId],
      );
      const event = stripe.eventFor('charge.refunded', intent);
      await deliver(event);
      await processed(event.id);
      const row = await t.db.pool.query(`SELECT status FROM refunds WHERE id = $1`, [ours.body.id]);
      expect(row.rows[0].status).toBe('succeeded');
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 1000 },
      });
    }, 30_000);

    it('an accepted event whose job gave up (a long outage) is processed by the reconciliation sweep', async () => {
      const { orderId } = await paidOrder(10_000, 1);
      const intent = (await orderOf(orderId)).payment.paymentIntentId;
      const event = stripe.refundFromDashboard(intent, 2500);
      // accepted (200 to Stripe, which never sends it again) but its job failed for good: the
      // inbox row is all that is left, unprocessed, for longer than any retry could take
      await t.db.pool.query(
        `INSERT INTO webhook_events (id, type, intent_id, payload, received_at) VALUES ($1, $2, $3, $4, now() - interval '10 minutes')`,
        [event.id, event.type, intent, JSON.stringify(event)],
      );
      const fresh = stripe.refundFromDashboard(intent, 500); // a newer one, its job maybe still retrying
      await t.db.pool.query(
        `INSERT INTO webhook_events (id, type, intent_id, payload, received_at) VALUES ($1, $2, $3, $4, now())`,
        [fresh.id, fresh.type, intent, JSON.stringify(fresh)],
      );
      expect(await worker.get(PaymentFinalizer).reconcile()).toBeGreaterThanOrEqual(1);
      const rows = await t.db.pool.query(
        `SELECT id, processed_at FROM webhook_events WHERE id = ANY($1) ORDER BY received_at`,
        [[event.id, fresh.id]],
      );
      expect(rows.rows.map((r) => [r.id, r.processed_at !== null])).toEqual([
        [event.id, true],
        [fresh.id, false],
      ]);
      // the refund made at Stripe is on the order (both, as the provider lists them now)
      const o = await orderOf(orderId);
      expect(o.status).toBe('PARTIALLY_REFUNDED');
      expect(o.refunded.amount).toBe(3000);
    }, 30_000);

    it("a dashboard refund whose event overtakes the payment's success: the order is paid, then refunded — never confirmed with the refund dropped", async () => {
      const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 10_000 });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      const intent = await startPayment(order.body.id);
      const success = stripe.succeed(intent); // its delivery is late (or its job still retrying)
      const refunded = stripe.refundFromDashboard(intent, 3000);
      await deliver(refunded);
      await processed(refunded.id);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 3000 },
      });
      await deliver(success);
      await processed(success.id);
      await drain(worker, t.db.pool, SETTLE_REFUNDS_NOW);
      const o = await orderOf(order.body.id);
      expect(o).toMatchObject({ status: 'PARTIALLY_REFUNDED', refunded: { amount: 3000 } });
      expect(o.payment.refunds).toEqual([
        expect.objectContaining({
          reason: 'external',
          status: 'succeeded',
          amount: { amount: 3000, currency: 'INR' },
        }),
      ]);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 0 }); // sold once, committed once
    }, 30_000);

    it('a refund event after the success was recorded but before the order moved (a job that died between): the order is paid, then refunded', async () => {
      const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 10_000 });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      const intent = await startPayment(order.body.id);
      stripe.succeed(intent);
      await t.db.pool.query(`UPDATE payments SET status = 'succeeded' WHERE intent_id = $1`, [
        intent,
      ]);
      const refunded = stripe.refundFromDashboard(intent); // all of it
      await deliver(refunded);
      await processed(refunded.id);
      expect(await orderOf(order.body.id)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
      const history = await t.db.pool.query(
        `SELECT to_status FROM order_status_history WHERE order_id = $1 ORDER BY id`,
        [order.body.id],
      );
      expect(history.rows.map((r) => r.to_status)).toEqual([
        'CREATED',
        'INVENTORY_RESERVED',
        'PAYMENT_PENDING',
        'PAID',
        'CONFIRMED',
        'REFUNDED',
      ]);
    }, 30_000);

    it('one of ours failed at the bank while pending, then a dashboard refund: ours settles as failed and the dashboard one is adopted (Stripe lists newest first)', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      stripe.holdRefunds(intent);
      const ours = await refund(orderId, {});
      expect([ours.status, ours.body.status]).toEqual([201, 'pending']);
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      stripe.settleRefund(remote.id, 'failed'); // its event lost in an outage
      await dashboardRefundInstead(orderId, intent);
    }, 30_000);

    it('a refund the bank returns after Stripe reported it succeeded is raised once for a person (log, refunds_reversed_total), becomes failed and refundable again', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const ours = await refund(orderId, { amount: { amount: 4000, currency: 'INR' } });
      expect([ours.status, ours.body.status]).toEqual([201, 'succeeded']);
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      const metric = () => workerCounter('refunds_reversed_total');
      const before = await metric();
      const event = stripe.reverseRefund(remote.id);
      await deliver(event);
      await processed(event.id);
      const again = stripe.eventFor('charge.refund.updated', intent); // a later event of the payment
      await deliver(again);
      await processed(again.id);
      expect(await metric()).toBe(before + 1);
      const row = await t.db.pool.query(`SELECT status, failure FROM refunds WHERE id = $1`, [
        ours.body.id,
      ]);
      expect(row.rows[0]).toEqual({ status: 'failed', failure: 'reversed_at_provider' });
      // the customer, mailed "refunded", is owed one email saying it did not reach them
      const told = await t.db.pool.query(
        `SELECT count(*)::int AS n FROM outbox WHERE topic = 'order.refund-reversed'
            AND payload = jsonb_build_object('orderId', $1::text, 'refundId', $2::text)`,
        [orderId, ours.body.id],
      );
      expect(told.rows[0].n).toBe(1);
      // a pass that read the list before the reversal (it still said succeeded) cannot bring it
      // back: the guarded UPDATE never reinstates a refund the provider reversed
      expect(
        await worker
          .get(RefundRepository)
          .reinstate(
            ours.body.id,
            remote.id,
            ['reversed_at_provider', 'failed_at_provider'],
            new Date(),
          ),
      ).toBeNull();
      // no transition leaves PARTIALLY_REFUNDED; what was refunded is what reached the customer
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 0 },
      });
      // the admin refunds them again: all of it is refundable (it was a 409 while the reversed
      // refund still counted)
      const all = await refund(orderId, {});
      expect([all.status, all.body.status, all.body.amount?.amount]).toEqual([
        201,
        'succeeded',
        10_000,
      ]);
      expect(await orderOf(orderId)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
      const paid = await t.db.pool.query(
        `SELECT refund_reserved FROM payments WHERE intent_id = $1`,
        [intent],
      );
      expect(Number(paid.rows[0].refund_reserved)).toBe(10_000);
    }, 30_000);

    it('a refund the bank returns whose event never comes (not among the events API.md lists) is found by the reconciliation, once per period while it is watched', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const ours = await refund(orderId, { amount: { amount: 4000, currency: 'INR' } });
      expect([ours.status, ours.body.status]).toEqual([201, 'succeeded']);
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      stripe.reverseRefund(remote.id); // its charge.refund.updated: never delivered
      const lists = () =>
        stripe.requests.filter(
          (r) => r.method === 'GET' && r.path === '/v1/refunds' && r.body.payment_intent === intent,
        ).length;
      const reconcile = () => worker.get(PaymentFinalizer).reconcile();
      const statusOf = async () =>
        (await t.db.pool.query(`SELECT status, failure FROM refunds WHERE id = $1`, [ours.body.id]))
          .rows[0];
      const listed = lists();
      const watch = async () =>
        (
          await t.db.pool.query(
            `SELECT refunds_watched_until AS until FROM payments WHERE intent_id = $1`,
            [intent],
          )
        ).rows[0].until as Date;
      const watchedUntil = await watch();
      // just refunded (and so just looked at): not asked again within the period
      await reconcile();
      expect(lists()).toBe(listed);
      expect(await statusOf()).toEqual({ status: 'succeeded', failure: null });
      // the period passes: the provider is asked, and the refund it failed is failed here too
      await t.db.pool.query(
        `UPDATE payments SET refunds_checked_at = now() - interval '7 hours' WHERE intent_id = $1`,
        [intent],
      );
      await reconcile();
      expect(lists()).toBe(listed + 1);
      expect(await statusOf()).toEqual({ status: 'failed', failure: 'reversed_at_provider' });
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 0 },
      });
      await reconcile();
      expect(lists()).toBe(listed + 1);
      // reading the refunds does not extend the watch: it ends 30 days after the last refund
      expect(await watch()).toEqual(watchedUntil);
      // past the watch (30 days after its last refund): never asked again
      await t.db.pool.query(
        `UPDATE payments SET refunds_checked_at = now() - interval '7 hours', refunds_watched_until = now() - interval '1 second'
          WHERE intent_id = $1`,
        [intent],
      );
      await reconcile();
      expect(lists()).toBe(listed + 1);
    }, 30_000);

    it('a dashboard refund still pending at its charge.refunded, settled later without an event that reaches us, is recorded by the reconciliation', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const dashboard = stripe.refundFromDashboard(intent, 3000, { pending: true });
      await deliver(dashboard);
      await processed(dashboard.id);
      // pending at the provider: not the customer's money yet, not recorded
      expect(await orderOf(orderId)).toMatchObject({
        status: 'CONFIRMED',
        refunded: { amount: 0 },
      });
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      expect(remote.status).toBe('pending');
      stripe.settleRefund(remote.id); // its charge.refund.updated: never delivered
      // the charge.refunded sync found a refund at the provider: the payment is watched
      await t.db.pool.query(
        `UPDATE payments SET refunds_checked_at = now() - interval '7 hours' WHERE intent_id = $1`,
        [intent],
      );
      await worker.get(PaymentFinalizer).reconcile();
      expect(await orderOf(orderId)).toMatchObject({
        status: 'PARTIALLY_REFUNDED',
        refunded: { amount: 3000 },
      });
      const rows = await t.db.pool.query(
        `SELECT reason, status, amount FROM refunds WHERE order_id = $1`,
        [orderId],
      );
      expect(rows.rows.map((r) => [r.reason, r.status, Number(r.amount)])).toEqual([
        ['external', 'succeeded', 3000],
      ]);
    }, 30_000);

    it('a full refund the bank returns: the order stays REFUNDED and a dashboard refund made instead is adopted', async () => {
      const { orderId, intent, productId } = await paidOrder(10_000, 1);
      const ours = await refund(orderId, {});
      expect([ours.status, ours.body.status]).toEqual([201, 'succeeded']);
      const [remote] = (await stripe.client().refunds.list({ payment_intent: intent })).data;
      const event = stripe.reverseRefund(remote.id);
      await deliver(event);
      await processed(event.id);
      expect(await orderOf(orderId)).toMatchObject({ status: 'REFUNDED', refunded: { amount: 0 } });
      await dashboardRefundInstead(orderId, intent);
      // the sale is uncounted once, not again for the second refund
      const history = await t.db.pool.query(
        `SELECT to_status, reason FROM order_status_history WHERE order_id = $1 ORDER BY id`,
        [orderId],
      );
      expect(history.rows.slice(-3)).toEqual([
        { to_status: 'REFUNDED', reason: 'refund 10000' },
        { to_status: 'REFUNDED', reason: 'refund 10000 reversed' },
        { to_status: 'REFUNDED', reason: 'refund 10000' },
      ]);
      const sold = await t.db.pool.query(`SELECT units_sold FROM products WHERE id = $1`, [
        productId,
      ]);
      expect(sold.rows[0].units_sold).toBe(0);
    }, 30_000);

    it('charge.refunded for a refund made in the Stripe dashboard is adopted once', async () => {
      const { orderId } = await paidOrder(10_000, 1);
      const intent = (await orderOf(orderId)).payment.paymentIntentId;
      const event = stripe.refundFromDashboard(intent, 3000);
      await Promise.all([deliver(event), deliver(event), deliver(event)]);
      await processed(event.id);
      const o = await orderWhen(
        orderId,
        'PARTIALLY_REFUNDED',
        (x) => x.status === 'PARTIALLY_REFUNDED',
      );
      expect(o).toMatchObject({ status: 'PARTIALLY_REFUNDED', refunded: { amount: 3000 } });
      expect(o.payment.refunds).toEqual([
        expect.objectContaining({ reason: 'external', status: 'succeeded' }),
      ]);
    }, 30_000);

    it('"all that remains", asked before a dashboard refund\'s event came: 201 for what remains after it (the provider\'s "too large" was answered 409); pending there, 503 until it settles', async () => {
      const { orderId, intent } = await paidOrder(10_000, 1);
      const dashboard = stripe.refundFromDashboard(intent, 3000); // its event not delivered yet
      const rest = await refund(orderId, {});
      expect(rest.status).toBe(201);
      expect(rest.body).toMatchObject({ amount: { amount: 7000 }, status: 'succeeded' });
      await deliver(dashboard);
      await processed(dashboard.id);
      expect(await orderOf(orderId)).toMatchObject({
        status: 'REFUNDED',
        refunded: { amount: 10_000 },
      });
      const refunded = stripe.requests.filter(
        (r) => r.path === '/v1/refunds' && r.method === 'POST' && r.body.payment_intent === intent,
      );
      expect(refunded.map((r) => r.body.amount)).toEqual(['10000', '7000']);

      // a dashboard refund still pending at the provider: what remains is not known yet
      const other = await paidOrder(10_000, 1);
      stripe.refundFromDashboard(other.intent, 3000, { pending: true });
      const key = newKey();
      const early = await refund(other.orderId, {}, key);
      expectProblem(early, 503, 'SERVICE_UNAVAILABLE');
      expect(Number(early.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await orderOf(other.orderId)).refunded).toEqual({ amount: 0, currency: 'INR' });

      // one of ours pending at the bank is no reason to wait: it is in our records, and the rest
      // is sized around it — after an unseen dashboard refund too (both were a 503: review)
      const third = await paidOrder(10_000, 1);
      stripe.holdRefunds(third.intent);
      const ours = await refund(third.orderId, { amount: { amount: 2000, currency: 'INR' } });
      expect(ours.body).toMatchObject({ status: 'pending' });
      stripe.refundFromDashboard(third.intent, 3000); // its event not delivered yet
      const around = await refund(third.orderId, {});
      expect(around.status).toBe(201);
      expect(around.body).toMatchObject({ amount: { amount: 5000 }, status: 'pending' });
      // … and a key's retry after the bank declined its "all that remains"
      const fourth = await paidOrder(10_000, 1);
      stripe.holdRefunds(fourth.intent);
      await refund(fourth.orderId, { amount: { amount: 2000, currency: 'INR' } });
      stripe.declineRefunds(fourth.intent);
      const declinedKey = newKey();
      expect((await refund(fourth.orderId, {}, declinedKey)).status).toBe(502);
      stripe.acceptRefunds(fourth.intent);
      const retried = await refund(fourth.orderId, {}, declinedKey);
      expect(retried.status).toBe(201);
      expect(retried.body).toMatchObject({ amount: { amount: 8000 }, status: 'pending' });
    }, 30_000);
  });
});

describe("Stripe's three-decimal currencies (KWD): every amount charged or refunded ends in 0", () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let admin: Session;
  let alice: Buyer;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({ env: { ...stripeEnv(stripe), SHOP_CURRENCY: 'KWD' } });
    admin = await createAdmin(t);
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await t?.close();
    await stripe?.close();
  });

  it('a price, an order total or a refund amount that is no multiple of 10 is refused before the provider is asked (it refuses them: each was a 502 on every try)', async () => {
    const product = (amount: number) =>
      t.http.post(
        '/v1/admin/products',
        {
          sku: `KWD-${newKey().slice(0, 8)}`,
          name: 'Dates',
          description: 'Medjool',
          price: { amount, currency: 'KWD' },
          initialStock: 5,
        },
        { token: admin.accessToken },
      );
    const odd = await product(5125);
    expectProblem(odd, 400, 'VALIDATION_FAILED');
    expect(odd.body.errors).toEqual([
      { field: 'price.amount', message: 'must be a multiple of 10' },
    ]);
    expect((await product(5120)).status).toBe(201);
    // a price set before the rule: its checkout is refused, nothing reserved
    const before = await insertProduct(t.db.pool, { stock: 5, priceAmount: 5125, currency: 'KWD' });
    const refused = await placeOrder(t.http, alice, [{ productId: before, quantity: 1 }]);
    expectProblem(refused, 409, 'ORDER_NOT_PAYABLE');
    expect(await stockOf(t.db.pool, before)).toEqual({ onHand: 5, reserved: 0 });
    // twice is a multiple of 10: sold
    const even = await placeOrder(t.http, alice, [{ productId: before, quantity: 2 }]);
    expect(even.status).toBe(201);
    // a refund amount: refused before anything is recorded or asked
    const refund = await t.http.post(
      `/v1/admin/orders/${even.body.id}/refunds`,
      { amount: { amount: 1235, currency: 'KWD' } },
      { token: admin.accessToken, idempotencyKey: newKey() },
    );
    expectProblem(refund, 400, 'VALIDATION_FAILED');
    expect(refund.body.errors).toEqual([
      { field: 'amount.amount', message: 'must be a multiple of 10' },
    ]);
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM refunds WHERE order_id = $1`,
      [even.body.id],
    );
    expect(rows[0].n).toBe(0);
  });
});
