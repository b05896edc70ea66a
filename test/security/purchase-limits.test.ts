import { createAdmin, signInLimitsAnswering } from '../support/auth';
import { INestApplicationContext } from '@nestjs/common';
import { loadConfig } from '../../src/config/config';
import { DomainError } from '../../src/common/errors/domain-error';
import { expectProblem } from '../support/http';
import { ReservationExpiryService } from '../../src/orders/reservation-expiry.service';
import { GatewayError, PAYMENT_GATEWAY, PaymentGateway } from '../../src/payments/payment-gateway';
import { insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { cancellationsOf } from '../support/order-status';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Issue 10, finding 4 (OWASP API6, unrestricted access to a sensitive business flow): one customer
 * could hold the whole catalog in unpaid orders. Per-customer caps on open unpaid orders
 * (INVENTORY_RESERVED / PAYMENT_PENDING, the new one included): PURCHASE_LIMIT_UNITS_PER_PRODUCT and
 * PURCHASE_LIMIT_OPEN_ORDERS, 0 = off. Here: 5 units per product, 3 open unpaid orders.
 */
describe('per-customer purchase limits', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let bob: Buyer;
  let carol: Buyer;
  let dave: Buyer;

  beforeAll(async () => {
    t = await bootTestApp({
      env: { PURCHASE_LIMIT_UNITS_PER_PRODUCT: '5', PURCHASE_LIMIT_OPEN_ORDERS: '3' },
    });
    worker = await bootTestWorker(t.config);
    [alice, bob, carol, dave] = await buyers(t.http, 4);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  const order = (buyer: Buyer, productId: string, quantity = 1, key = newKey()) =>
    placeOrder(t.http, buyer, [{ productId, quantity }], key);

  /** What the database says a customer holds in open unpaid orders. */
  async function heldBy(buyer: Buyer) {
    const { rows } = await t.db.pool.query(
      `WITH unpaid AS (
         SELECT id FROM orders WHERE user_id = $1 AND status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')
       ), per_product AS (
         SELECT sum(quantity) AS units FROM order_items WHERE order_id IN (SELECT id FROM unpaid) GROUP BY product_id
       )
       SELECT (SELECT count(*) FROM unpaid)::int AS orders,
              (SELECT coalesce(max(units), 0) FROM per_product)::int AS "maxUnits"`,
      [buyer.userId],
    );
    return rows[0] as { orders: number; maxUnits: number };
  }

  function waitForStatus(buyer: Buyer, orderId: string, wanted: string[]): Promise<string> {
    return waitFor(
      `order ${orderId} to be ${wanted.join(' or ')}`,
      async () =>
        (await t.http.get(`/v1/orders/${orderId}`, { token: buyer.token })).body.status as string,
      { until: (status) => wanted.includes(status) },
    );
  }

  it('is on by default: 5 units per product, 3 open unpaid orders, 10 abandoned unpaid orders a day', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).purchaseLimits).toEqual({
      unitsPerProduct: 5,
      openOrders: 3,
      abandonedPerDay: 10,
    });
  });

  it('RATE_LIMIT_ENABLED=false switches the abandoned-orders limit off with all other throttling (API.md), not the 409 caps', () => {
    expect(
      loadConfig({ NODE_ENV: 'development', RATE_LIMIT_ENABLED: 'false' }).purchaseLimits,
    ).toEqual({ unitsPerProduct: 5, openOrders: 3, abandonedPerDay: 0 });
    expect(
      loadConfig({
        NODE_ENV: 'development',
        RATE_LIMIT_ENABLED: 'false',
        PURCHASE_LIMIT_ABANDONED_PER_DAY: '4',
      }).purchaseLimits.abandonedPerDay,
    ).toBe(0);
  });

  it('a customer who keeps abandoning unpaid orders (cancelled, expired) gets no new one that day (429): re-ordering cannot hold stock all day', async () => {
    const capped = await bootTestApp({
      db: t.db,
      env: {
        PURCHASE_LIMIT_UNITS_PER_PRODUCT: '5',
        PURCHASE_LIMIT_OPEN_ORDERS: '3',
        PURCHASE_LIMIT_ABANDONED_PER_DAY: '3',
        RATE_LIMIT_ENABLED: 'true', // the request limits' RateLimit items must survive the 429
      },
    });
    try {
      await signInLimitsAnswering(capped.http);
      const [erin, frank] = await buyers(capped.http, 2);
      const p = await insertProduct(t.db.pool, { stock: 10 });
      const placed: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await placeOrder(capped.http, erin, [{ productId: p, quantity: 5 }]);
        expect(res.status).toBe(201);
        placed.push(res.body.id as string);
        if (i < 2) {
          const cancel = await capped.http.post(
            `/v1/orders/${res.body.id}/cancel`,
            {},
            { token: erin.token, idempotencyKey: newKey() },
          );
          expect(cancel.status).toBe(200);
        }
      }
      // the third one is left to expire (released as RESERVATION_EXPIRED)
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
        [placed[2]],
      );
      expect(await capped.app.get(ReservationExpiryService).expire(placed[2])).toBe(true);
      const expired = await capped.http.get(`/v1/orders/${placed[2]}`, { token: erin.token });
      expect([expired.body.status, expired.body.cancellationReason]).toEqual([
        'CANCELLED',
        'RESERVATION_EXPIRED',
      ]);

      // not a cap on what erin holds (she holds nothing: API.md's 409 caps do not apply) but a
      // limit on placing orders: 429 with when to retry (the oldest abandoned order a day old)
      const refused = await placeOrder(capped.http, erin, [{ productId: p, quantity: 5 }]);
      expect([refused.status, refused.body.code]).toEqual([429, 'RATE_LIMITED']);
      expect(refused.body.detail).toMatch(/at most 3 orders unpaid/);
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(86_400 - 120);
      expect(retryAfter).toBeLessThanOrEqual(86_400);
      // one item per limit counting the request: the guards' ones, then this one
      const policies = refused.headers.get('ratelimit-policy')!.split(', ');
      expect(policies).toEqual(
        expect.arrayContaining(['"order-create";q=30;w=60', '"abandoned-orders";q=3;w=86400']),
      );
      expect(policies[policies.length - 1]).toBe('"abandoned-orders";q=3;w=86400');
      expect(refused.headers.get('ratelimit')!.split(', ').pop()).toBe(
        `"abandoned-orders";r=0;t=${retryAfter}`,
      );
      // more abandoned than the allowance (orders placed while under it, expired since): the wait
      // is until enough are a day old — here the second oldest, 20 h old (4 h left)
      const [spare] = await buyers(capped.http, 1);
      const older: string[] = [];
      const cancelOne = async (id: string) =>
        expect(
          (
            await capped.http.post(
              `/v1/orders/${id}/cancel`,
              {},
              { token: spare.token, idempotencyKey: newKey() },
            )
          ).status,
        ).toBe(200);
      for (let i = 0; i < 4; i++) {
        const o = await placeOrder(capped.http, spare, [{ productId: p, quantity: 1 }]);
        expect(o.status).toBe(201);
        older.push(o.body.id as string);
        if (i < 2) await cancelOne(o.body.id as string); // two abandoned, two still open
      }
      await cancelOne(older[2]);
      await cancelOne(older[3]); // four abandoned: one past the allowance of three
      for (const [i, hours] of [22, 20, 2, 1].entries()) {
        await t.db.pool.query(
          `UPDATE orders SET created_at = now() - make_interval(hours => $2) WHERE id = $1`,
          [older[i], hours],
        );
      }
      const waitMore = await placeOrder(capped.http, spare, [{ productId: p, quantity: 1 }]);
      expect(waitMore.status).toBe(429);
      const secs = Number(waitMore.headers.get('retry-after'));
      expect(secs).toBeGreaterThan(4 * 3600 - 60);
      expect(secs).toBeLessThanOrEqual(4 * 3600);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 0 });
      // another customer is not affected
      expect((await placeOrder(capped.http, frank, [{ productId: p, quantity: 1 }])).status).toBe(
        201,
      );
      const paidAfterAll = (orderId: string) =>
        t.db.pool.query(
          `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
           VALUES (gen_random_uuid(), $1::uuid, 'simulated', 'pi_late_' || md5($1::text), 'secret', 500, 'INR', 'succeeded', now(), now())`,
          [orderId],
        );
      // one the customer cancelled and then paid (confirmed at the provider before the intent's
      // cancel job ran; refunded in full): still walked away from — paying into one's own
      // cancels would otherwise re-order without end, the shop paying a fee each time
      await paidAfterAll(placed[0]);
      expect((await placeOrder(capped.http, erin, [{ productId: p, quantity: 1 }])).status).toBe(
        429,
      );
      // an order that was paid after all (late: it had expired; the payment is refunded) was not
      // walked away from: it does not count
      await paidAfterAll(placed[2]);
      const afterLatePayment = await placeOrder(capped.http, erin, [{ productId: p, quantity: 1 }]);
      expect(afterLatePayment.status).toBe(201);
      await capped.http.post(
        `/v1/orders/${afterLatePayment.body.id}/cancel`,
        {},
        { token: erin.token, idempotencyKey: newKey() },
      );
      placed.push(afterLatePayment.body.id as string);
      // a day later the abandoned orders no longer count
      await t.db.pool.query(
        `UPDATE orders SET created_at = created_at - interval '25 hours' WHERE id = ANY($1)`,
        [placed],
      );
      expect((await placeOrder(capped.http, erin, [{ productId: p, quantity: 5 }])).status).toBe(
        201,
      );
    } finally {
      await capped.close();
    }
  });

  it("declined payments count as abandoned orders: failing one's own card (3-D Secure) in a loop cannot hold stock all day", async () => {
    const capped = await bootTestApp({
      db: t.db,
      env: { PURCHASE_LIMIT_ABANDONED_PER_DAY: '2', RATE_LIMIT_ENABLED: 'true' },
    });
    try {
      await signInLimitsAnswering(capped.http);
      const [gina] = await buyers(capped.http, 1);
      const p = await insertProduct(t.db.pool, { stock: 10 });
      for (let i = 0; i < 2; i++) {
        const placed = await placeOrder(capped.http, gina, [{ productId: p, quantity: 5 }]);
        expect(placed.status).toBe(201);
        const pay = await capped.http.post(
          `/v1/orders/${placed.body.id}/payment`,
          {},
          { token: gina.token, idempotencyKey: newKey() },
        );
        expect(pay.status).toBe(201);
        await capped.http.post(
          `/v1/dev/payment-intents/${pay.body.paymentIntentId}/confirm`,
          { outcome: 'failed' },
          { token: gina.token },
        );
        await waitForStatus(gina, placed.body.id as string, ['CANCELLED']);
        const row = await t.db.pool.query(`SELECT cancellation_reason FROM orders WHERE id = $1`, [
          placed.body.id,
        ]);
        expect(row.rows[0].cancellation_reason).toBe('PAYMENT_FAILED');
      }
      const refused = await placeOrder(capped.http, gina, [{ productId: p, quantity: 5 }]);
      expect([refused.status, refused.body.code]).toEqual([429, 'RATE_LIMITED']);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 0 });
    } finally {
      await capped.close();
    }
  }, 60_000);

  it("orders whose payment could not start for the shop's failure (the provider down) and that then expired or were cancelled unpaid are not held against the customer; an order never tried is", async () => {
    const capped = await bootTestApp({
      db: t.db,
      env: { PURCHASE_LIMIT_ABANDONED_PER_DAY: '2', RATE_LIMIT_ENABLED: 'true' },
    });
    try {
      await signInLimitsAnswering(capped.http);
      const [hal] = await buyers(capped.http, 1);
      const p = await insertProduct(t.db.pool, { stock: 10 });
      const gateway = capped.app.get<symbol, PaymentGateway>(PAYMENT_GATEWAY);
      const down = jest
        .spyOn(gateway, 'createIntent')
        .mockRejectedValue(new GatewayError('unavailable', undefined, 'connect ECONNREFUSED'));
      const tried: string[] = [];
      for (let i = 0; i < 3; i++) {
        const placed = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
        expect(placed.status).toBe(201);
        tried.push(placed.body.id as string);
        for (let attempt = 0; attempt < 2; attempt++) {
          const pay = await capped.http.post(
            `/v1/orders/${placed.body.id}/payment`,
            {},
            { token: hal.token, idempotencyKey: newKey() },
          );
          expect([pay.status, pay.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
        }
      }
      down.mockRestore();
      // one the customer gave up on, two that expired meanwhile
      const gaveUp = await capped.http.post(
        `/v1/orders/${tried[0]}/cancel`,
        {},
        { token: hal.token, idempotencyKey: newKey() },
      );
      expect(gaveUp.status).toBe(200);
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`,
        [tried.slice(1)],
      );
      for (const id of tried.slice(1))
        expect(await capped.app.get(ReservationExpiryService).expire(id)).toBe(true);
      const states = await t.db.pool.query(
        `SELECT cancellation_reason AS reason, payment_start_failed_at IS NOT NULL AS marked
           FROM orders WHERE id = ANY($1::uuid[]) ORDER BY created_at`,
        [tried],
      );
      expect(states.rows).toEqual([
        { reason: 'CUSTOMER_REQUESTED', marked: true },
        { reason: 'RESERVATION_EXPIRED', marked: true },
        { reason: 'RESERVATION_EXPIRED', marked: true },
      ]);
      // three abandoned through the outage, none counted: the provider back, the customer orders
      const next = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
      expect(next.status).toBe(201);
      // orders never tried still count: two cancelled, and the next is refused for the day
      const cancel = (id: string) =>
        capped.http.post(
          `/v1/orders/${id}/cancel`,
          {},
          { token: hal.token, idempotencyKey: newKey() },
        );
      expect((await cancel(next.body.id as string)).status).toBe(200);
      const another = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
      expect((await cancel(another.body.id as string)).status).toBe(200);
      const refused = await placeOrder(capped.http, hal, [{ productId: p, quantity: 1 }]);
      expect([refused.status, refused.body.code]).toEqual([429, 'RATE_LIMITED']);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 0 });
    } finally {
      await capped.close();
    }
  }, 60_000);

  /** An app allowing each customer one abandoned order a day, its admin and one customer. */
  const allowingOneAbandoned = async () => {
    const capped = await bootTestApp({
      db: t.db,
      env: { PURCHASE_LIMIT_ABANDONED_PER_DAY: '1', RATE_LIMIT_ENABLED: 'true' },
    });
    await signInLimitsAnswering(capped.http);
    const admin = (await createAdmin(capped)).accessToken;
    const [buyer] = await buyers(capped.http, 1);
    return { capped, admin, buyer };
  };

  it("orders cancelled because a product of theirs was taken off sale before their payment began are the shop's doing: never counted as abandoned, also when a racing payment start had made an intent", async () => {
    const { capped, buyer: ida } = await allowingOneAbandoned();
    try {
      const withdrawn: string[] = [];
      for (let i = 0; i < 2; i++) {
        const p = await insertProduct(t.db.pool, { stock: 5 });
        const placed = await placeOrder(capped.http, ida, [{ productId: p, quantity: 1 }]);
        expect(placed.status).toBe(201);
        withdrawn.push(placed.body.id as string);
        // (in the database: the worker's release of its orders, which the API's withdrawal asks
        // for, would race the payment start this is about)
        await t.db.pool.query(`UPDATE products SET active = false WHERE id = $1`, [p]);
        const pay = await capped.http.post(
          `/v1/orders/${placed.body.id}/payment`,
          {},
          { token: ida.token, idempotencyKey: newKey() },
        );
        expectProblem(pay, 409, 'ORDER_NOT_PAYABLE');
        expect(pay.body.detail).toMatch(/and is cancelled/);
      }
      // the second: a payment start that raced the cancel recorded its intent (never handed out,
      // cancelled by that start)
      await t.db.pool.query(
        `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, status, amount, currency, created_at, updated_at)
         SELECT gen_random_uuid(), o.id, 'simulated', 'pi_raced_' || substr(o.id::text, 1, 8), 'never handed out', 'canceled',
                o.total_amount, o.currency, now(), now()
           FROM orders o WHERE o.id = $1`,
        [withdrawn[1]],
      );
      expect(await cancellationsOf(t.db.pool, withdrawn)).toEqual(
        withdrawn.map(() => ({
          status: 'CANCELLED',
          reason: 'PAYMENT_FAILED',
          actor: 'system:product-withdrawn',
        })),
      );
      // two cancelled for the shop's doing, an allowance of one: the customer still orders
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const next = await placeOrder(capped.http, ida, [{ productId: p, quantity: 1 }]);
      expect(next.status).toBe(201);
      // one the customer abandons counts, as ever
      expect(
        (
          await capped.http.post(
            `/v1/orders/${next.body.id}/cancel`,
            {},
            { token: ida.token, idempotencyKey: newKey() },
          )
        ).status,
      ).toBe(200);
      const refused = await placeOrder(capped.http, ida, [{ productId: p, quantity: 1 }]);
      expect([refused.status, refused.body.code]).toEqual([429, 'RATE_LIMITED']);
    } finally {
      await capped.close();
    }
  }, 60_000);

  it("an order whose product was taken off sale, left unpaid until its window ran out, is cancelled as the shop's doing too: never counted as abandoned", async () => {
    const { capped, admin, buyer: ivy } = await allowingOneAbandoned();
    try {
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const placed = await placeOrder(capped.http, ivy, [{ productId: p, quantity: 1 }]);
      expect(placed.status).toBe(201);
      // a recall, then the product mended and back on sale: the order could not be paid since
      // (taken off sale in the database: the worker's release of its orders, which the API's
      // withdrawal asks for, is not what this is about — the expiry is the net under it)
      await t.db.pool.query(`UPDATE products SET active = false WHERE id = $1`, [p]);
      expect(
        (await capped.http.patch(`/v1/admin/products/${p}`, { active: true }, { token: admin }))
          .status,
      ).toBe(200);
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
        [placed.body.id],
      );
      expect(await capped.app.get(ReservationExpiryService).expire(placed.body.id)).toBe(true);
      expect(await cancellationsOf(t.db.pool, [placed.body.id])).toEqual([
        { status: 'CANCELLED', reason: 'PAYMENT_FAILED', actor: 'system:product-withdrawn' },
      ]);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
      // an allowance of one, none of it spent: the customer still orders, and abandons that one
      const next = await placeOrder(capped.http, ivy, [{ productId: p, quantity: 1 }]);
      expect(next.status).toBe(201);
      // one the customer left to run out without a withdrawal counts, as ever
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
        [next.body.id],
      );
      expect(await capped.app.get(ReservationExpiryService).expire(next.body.id)).toBe(true);
      const refused = await placeOrder(capped.http, ivy, [{ productId: p, quantity: 1 }]);
      expect([refused.status, refused.body.code]).toEqual([429, 'RATE_LIMITED']);
    } finally {
      await capped.close();
    }
  }, 60_000);

  it('refuses more units of one product than the cap, counting open unpaid orders, with 409', async () => {
    const p = await insertProduct(t.db.pool, { stock: 100 });

    const tooMany = await order(alice, p, 6);
    expect(tooMany.status).toBe(409);
    expect(tooMany.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(tooMany.body.code).toBe('PURCHASE_LIMIT_EXCEEDED');
    expect(tooMany.body.detail).toMatch(/at most 5 units of a product/);
    expect(tooMany.body.limits).toEqual([
      { cap: 'unitsPerProduct', limit: 5, held: 6, productId: p },
    ]);

    expect((await order(alice, p, 3)).status).toBe(201);
    const over = await order(alice, p, 3);
    expect(over.status).toBe(409);
    expect(over.body.limits).toEqual([{ cap: 'unitsPerProduct', limit: 5, held: 6, productId: p }]);
    expect((await order(alice, p, 2)).status).toBe(201); // exactly at the cap
    // refused orders left nothing behind
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
    expect(await heldBy(alice)).toEqual({ orders: 2, maxUnits: 5 });
  });

  it('refuses a fourth open unpaid order; a cancel or a payment frees a slot; others are unaffected', async () => {
    const products = await Promise.all(
      Array.from({ length: 6 }, () => insertProduct(t.db.pool, { stock: 10 })),
    );
    const created = [];
    for (const p of products.slice(0, 3)) {
      const res = await order(bob, p);
      expect(res.status).toBe(201);
      created.push(res.body.id as string);
    }
    const fourth = await order(bob, products[3]);
    expect(fourth.status).toBe(409);
    expect(fourth.body.code).toBe('PURCHASE_LIMIT_EXCEEDED');
    expect(fourth.body.detail).toMatch(/at most 3 unpaid orders/);
    expect(fourth.body.limits).toEqual([{ cap: 'openOrders', limit: 3, held: 4 }]);
    expect(await stockOf(t.db.pool, products[3])).toEqual({ onHand: 10, reserved: 0 });

    // another customer is not affected by bob's orders
    expect((await order(carol, products[3])).status).toBe(201);

    // a cancelled order no longer counts
    const cancel = await t.http.post(
      `/v1/orders/${created[0]}/cancel`,
      {},
      { token: bob.token, idempotencyKey: newKey() },
    );
    expect(cancel.status).toBe(200);
    expect((await order(bob, products[3])).status).toBe(201);
    expect((await order(bob, products[4])).status).toBe(409);

    // nor does a paid one (PAYMENT_PENDING still counts: it holds stock until paid)
    const pay = await t.http.post(
      `/v1/orders/${created[1]}/payment`,
      {},
      { token: bob.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    expect((await order(bob, products[4])).status).toBe(409);
    const confirm = await t.http.post(
      `/v1/dev/payment-intents/${pay.body.paymentIntentId}/confirm`,
      { outcome: 'succeeded' },
      { token: bob.token },
    );
    expect(confirm.status).toBe(200);
    expect(await waitForStatus(bob, created[1], ['PAID', 'CONFIRMED'])).toMatch(/PAID|CONFIRMED/);
    expect((await order(bob, products[4])).status).toBe(201);
    expect(await heldBy(bob)).toEqual({ orders: 3, maxUnits: 1 });
  });

  it('an idempotent replay of an order that was created is replayed, even at the cap', async () => {
    const p = await insertProduct(t.db.pool, { stock: 20 });
    const key = newKey();
    const first = await order(dave, p, 5, key);
    expect(first.status).toBe(201);
    const replay = await order(dave, p, 5, key);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(first.body.id);
    expect((await order(dave, p, 1)).status).toBe(409); // a new order is refused
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 20, reserved: 5 });
  });

  it('a cart line may hold more units than the cap (API.md: PUT answers 200); its checkout is the 409, and nothing is held', async () => {
    const [erin] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 50, priceAmount: 100 });
    const over = await t.http.put(`/v1/cart/items/${p}`, { quantity: 6 }, { token: erin.token });
    expect(over.status).toBe(200);
    expect(over.body.items).toMatchObject([{ productId: p, quantity: 6 }]);
    const refused = await placeOrder(t.http, erin, undefined);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('PURCHASE_LIMIT_EXCEEDED');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 50, reserved: 0 });
    expect(
      (await t.http.put(`/v1/cart/items/${p}`, { quantity: 5 }, { token: erin.token })).status,
    ).toBe(200);
    expect((await placeOrder(t.http, erin, undefined)).status).toBe(201);
  });

  it('20 parallel orders of one customer never pass a cap together', async () => {
    const [eve, frank] = await buyers(t.http, 2);
    const distinct = await Promise.all(
      Array.from({ length: 20 }, () => insertProduct(t.db.pool, { stock: 10 })),
    );
    const hot = await insertProduct(t.db.pool, { stock: 100 });

    // open-order cap: 20 orders of one unit of 20 different products at once → exactly 3
    const byOrders = await Promise.all(distinct.map((p) => order(eve, p)));
    expect(byOrders.filter((r) => r.status === 201)).toHaveLength(3);
    for (const r of byOrders.filter((x) => x.status !== 201)) {
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('PURCHASE_LIMIT_EXCEEDED');
    }
    expect(await heldBy(eve)).toEqual({ orders: 3, maxUnits: 1 });

    // units cap: 20 orders of two units of one product at once → exactly 2 (4 units; a third makes 6)
    const byUnits = await Promise.all(Array.from({ length: 20 }, () => order(frank, hot, 2)));
    expect(byUnits.filter((r) => r.status === 201)).toHaveLength(2);
    expect(
      byUnits.filter((r) => r.status === 409 && r.body.code === 'PURCHASE_LIMIT_EXCEEDED'),
    ).toHaveLength(18);
    expect(await heldBy(frank)).toEqual({ orders: 2, maxUnits: 4 });
    expect(await stockOf(t.db.pool, hot)).toEqual({ onHand: 100, reserved: 4 });
  });

  it('an order past its reservation, not yet reached by the expiry, holds its stock until a checkout that needs the room expires it', async () => {
    const [erin] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 100 });
    const first = await order(erin, p, 5);
    expect(first.status).toBe(201);
    expect((await order(erin, p, 1)).status).toBe(409);
    const overdue = (id: string) =>
      t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
        [id],
      );
    await overdue(first.body.id);
    const pay = await t.http.post(
      `/v1/orders/${first.body.id}/payment`,
      {},
      { token: erin.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(409);
    expect(pay.body.code).toBe('ORDER_NOT_PAYABLE');
    // the checkout that needs the room expires the overdue order (its stock released once), then counts again
    const second = await order(erin, p, 5);
    expect(second.status).toBe(201);
    const expired = await t.http.get(`/v1/orders/${first.body.id}`, { token: erin.token });
    expect(expired.body).toMatchObject({
      status: 'CANCELLED',
      cancellationReason: 'RESERVATION_EXPIRED',
    });
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
    expect(await heldBy(erin)).toEqual({ orders: 1, maxUnits: 5 });

    // an overdue order whose payment is still open at the provider may yet be paid: it keeps
    // counting (and its stock), and the checkout is refused — nothing else changes
    await overdue(second.body.id);
    await t.db.pool.query(
      `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
       VALUES (gen_random_uuid(), $1::uuid, 'simulated', 'pi_open_' || md5($1::text), 'secret', 500, 'INR', 'requires_payment_method', now(), now())`,
      [second.body.id],
    );
    const refused = await order(erin, p, 1);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('PURCHASE_LIMIT_EXCEEDED');
    expect(refused.body.limits).toEqual([
      { cap: 'unitsPerProduct', limit: 5, held: 6, productId: p },
    ]);
    expect(
      (await t.http.get(`/v1/orders/${second.body.id}`, { token: erin.token })).body.status,
    ).toBe('INVENTORY_RESERVED');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
  });

  it('a checkout whose expiry of an overdue order the database could not do answers 503 (retried), not the cap it no longer deserves; the retry with its key is placed', async () => {
    const [hugo] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 100 });
    const first = await order(hugo, p, 5);
    expect(first.status).toBe(201);
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
      [first.body.id],
    );
    // the database goes away for the expiry's statement (unreachable: the breaker's 503)
    const expiry = t.app.get(ReservationExpiryService);
    const expire = jest.spyOn(expiry, 'expire').mockRejectedValueOnce(
      new DomainError('SERVICE_UNAVAILABLE', 'The database is unavailable; retry later.', {
        headers: { 'Retry-After': '1' },
      }),
    );
    try {
      const key = newKey();
      const refused = await order(hugo, p, 5, key);
      expectProblem(refused, 503, 'SERVICE_UNAVAILABLE');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(expire).toHaveBeenCalledTimes(1);
      expect(await heldBy(hugo)).toEqual({ orders: 1, maxUnits: 5 });
      // the retry (the same key): the overdue order is expired, the new one placed
      const retried = await order(hugo, p, 5, key);
      expect(retried.status).toBe(201);
      expect(
        (await t.http.get(`/v1/orders/${first.body.id}`, { token: hugo.token })).body.status,
      ).toBe('CANCELLED');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
    } finally {
      expire.mockRestore();
    }
  });

  it('while the expiry is away, overdue orders still count: re-ordering every reservation window holds no more than the caps', async () => {
    const [gina] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 100 });
    const held: string[] = [];
    // three windows of five units, each left to lapse: each checkout expires the previous order
    for (let window = 0; window < 3; window++) {
      const placed = await order(gina, p, 5);
      expect(placed.status).toBe(201);
      held.push(placed.body.id as string);
      await t.db.pool.query(
        `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
        [placed.body.id],
      );
    }
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
    const statuses = await t.db.pool.query<{ status: string }>(
      `SELECT status FROM orders WHERE id = ANY($1) ORDER BY created_at`,
      [held],
    );
    expect(statuses.rows.map((r) => r.status)).toEqual([
      'CANCELLED',
      'CANCELLED',
      'INVENTORY_RESERVED',
    ]);
    // 20 concurrent checkouts with the last one overdue: its room is taken once, by one of them
    const rush = await Promise.all(Array.from({ length: 20 }, () => order(gina, p, 5)));
    expect(rush.filter((r) => r.status === 201)).toHaveLength(1);
    expect(
      rush.filter((r) => r.status === 409 && r.body.code === 'PURCHASE_LIMIT_EXCEEDED'),
    ).toHaveLength(19);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 5 });
    expect(await heldBy(gina)).toEqual({ orders: 1, maxUnits: 5 });
  });

  it('with both caps at 0 a customer may hold as much as there is (the old behaviour)', async () => {
    const unlimited = await bootTestApp({
      db: t.db,
      env: { PURCHASE_LIMIT_UNITS_PER_PRODUCT: '0', PURCHASE_LIMIT_OPEN_ORDERS: '0' },
    });
    try {
      const [grace] = await buyers(unlimited.http, 1);
      const p = await insertProduct(t.db.pool, { stock: 100 });
      for (let i = 0; i < 5; i++) {
        const res = await placeOrder(unlimited.http, grace, [{ productId: p, quantity: 10 }]);
        expect(res.status).toBe(201);
      }
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 100, reserved: 50 });
    } finally {
      await unlimited.close();
    }
  });
});
