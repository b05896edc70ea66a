import { randomUUID } from 'node:crypto';
import { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { OrderRepository } from '../../src/orders/order.repository';
import { ReservationExpiryService } from '../../src/orders/reservation-expiry.service';
import { OverdueOrders } from '../../src/payments/overdue-orders.service';
import { OutboxPublisher } from '../../src/outbox/outbox.publisher';
import { OutboxRepository } from '../../src/outbox/outbox.repository';
import { OutboxRelay } from '../../src/outbox/outbox.relay';
import { KeyPrefixClaim } from '../../src/redis/key-prefix-claim';
import { JobName, QueueName } from '../../src/queue/queues';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PrivateRedis } from '../support/private-redis';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootPublisherContext, bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

const releasesOf = async (t: TestApp, orderId: string) =>
  (
    await t.db.pool.query(
      `SELECT count(*)::int AS n FROM stock_movements WHERE order_id = $1 AND kind = 'release'`,
      [orderId],
    )
  ).rows[0].n as number;

const makeDue = (t: TestApp, orderId: string) =>
  t.db.pool.query(
    `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = $1`,
    [orderId],
  );

describe('reservation expiry', () => {
  let t: TestApp;
  let alice: Buyer;
  let expiry: ReservationExpiryService;
  let overdue: OverdueOrders;

  beforeAll(async () => {
    t = await bootTestApp();
    [alice] = await buyers(t.http, 1);
    expiry = t.app.get(ReservationExpiryService);
    overdue = t.app.get(OverdueOrders);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('does nothing before the deadline', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    expect(await expiry.expire(order.body.id)).toBe(false);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 2 });
  });

  it('releases stock exactly once when the delayed job and the sweeper run at the same time', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    await makeDue(t, order.body.id);

    const results = await Promise.all([
      expiry.expire(order.body.id),
      overdue.sweep(),
      overdue.settle(order.body.id),
      overdue.sweep(),
    ]);

    expect(results.filter((r) => r === true || r === 1)).toHaveLength(1);
    expect(await releasesOf(t, order.body.id)).toBe(1);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    const got = await t.http.get(`/v1/orders/${order.body.id}`, { token: alice.token });
    expect(got.body).toMatchObject({
      status: 'CANCELLED',
      cancellationReason: 'RESERVATION_EXPIRED',
    });
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('a sweep leaving more orders than a statement takes bind parameters still asks for the next batch', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    await makeDue(t, order.body.id);
    // 70,000 orders left as they are earlier in the run (a debit in flight each): one array parameter
    const left = Array.from({ length: 70_000 }, () => randomUUID());
    expect(await t.app.get(OrderRepository).findOverdueReservations(10, left)).toContain(
      order.body.id,
    );
    expect(
      await t.app.get(OrderRepository).findOverdueReservations(10, [...left, order.body.id]),
    ).not.toContain(order.body.id);
    expect(await overdue.sweep()).toBeGreaterThanOrEqual(1);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
  });

  it("each pass of the sweep reads only the overdue orders it can settle: the database's none with a payment open (a gateway outage during a sale left thousands, read and left each minute), the gateway's no debit in flight", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const place = async (payment: string | null) => {
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      await makeDue(t, order.body.id);
      if (payment)
        await t.db.pool.query(
          `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
           VALUES (gen_random_uuid(), $1::uuid, 'stripe', 'pi_' || $1::text, 'secret', 1000, 'INR', $2, now(), now())`,
          [order.body.id, payment],
        );
      return order.body.id as string;
    };
    const none = await place(null);
    const cancelled = await place('canceled');
    const open = await place('requires_payment_method');
    const debit = await place('processing');
    const paid = await place('succeeded');
    const ours = [none, cancelled, open, debit, paid];
    const found = async (payment?: 'none-open' | 'to-ask') =>
      (await t.app.get(OrderRepository).findOverdueReservations(1000, [], { payment })).filter(
        (id) => ours.includes(id),
      );
    expect((await found('none-open')).sort()).toEqual([none, cancelled].sort());
    // the gateway's pass: the open payments it asks about, not a debit in flight (its event
    // settles it, days later)
    expect((await found('to-ask')).sort()).toEqual([open, paid].sort());
    expect((await found()).sort()).toEqual([...ours].sort());
    // with the list of those left this pass too
    expect(
      (
        await t.app
          .get(OrderRepository)
          .findOverdueReservations(1000, [none], { payment: 'none-open' })
      ).filter((id) => ours.includes(id)),
    ).toEqual([cancelled]);
    await t.db.pool.query(`DELETE FROM payments WHERE order_id = ANY($1)`, [ours]);
    for (const id of ours) await expiry.expire(id);
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('customer cancel racing expiry: one wins, stock is released once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    for (let round = 0; round < 5; round++) {
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      await makeDue(t, order.body.id);
      const [cancelled] = await Promise.all([
        t.http.post(
          `/v1/orders/${order.body.id}/cancel`,
          {},
          { token: alice.token, idempotencyKey: newKey() },
        ),
        expiry.expire(order.body.id),
        overdue.sweep(),
      ]);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.status).toBe('CANCELLED');
      expect(await releasesOf(t, order.body.id)).toBe(1);
    }
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    await assertStockInvariants(t.db.pool, [p]);
  });
});

describe('outbox relay', () => {
  let t: TestApp;
  let ctx: INestApplicationContext;
  let alice: Buyer;

  beforeAll(async () => {
    t = await bootTestApp();
    ctx = await bootPublisherContext(t.config);
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await ctx?.close();
    await t?.close();
  });

  it('two relays running at once publish every event exactly once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 100 });
    const orders = await Promise.all(
      Array.from({ length: 40 }, () => placeOrder(t.http, alice, [{ productId: p, quantity: 1 }])),
    );
    expect(orders.every((o) => o.status === 201)).toBe(true);

    const relays = [1, 2].map(
      () =>
        new OutboxRelay(
          ctx.get(OutboxRepository),
          ctx.get(OutboxPublisher),
          ctx.get(KeyPrefixClaim),
        ),
    );
    let published = 0;
    for (let round = 0; round < 20; round++) {
      const results = await Promise.all(relays.map((r) => r.relayOnce(7)));
      const n = results.reduce((s, r) => s + r.published, 0);
      published += n;
      if (n === 0) break;
    }
    expect(published).toBe(40);

    const queue = ctx.get<Queue>(getQueueToken(QueueName.Orders));
    const delayed = await queue.getJobs(['delayed', 'waiting']);
    const expiryJobs = delayed.filter((j) => j.name === (JobName.ExpireReservation as string));
    expect(expiryJobs).toHaveLength(40);
    expect(new Set(expiryJobs.map((j) => (j.data as { orderId: string }).orderId))).toEqual(
      new Set(orders.map((o) => o.body.id as string)),
    );
    const pending = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM outbox WHERE status <> 'published'`,
    );
    expect(pending.rows[0].n).toBe(0);
  });

  it('publishing the same row twice adds no second job (jobId = outbox id)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const row = (
      await t.db.pool.query(
        `SELECT id, topic, aggregate_id AS "aggregateId", payload, attempts FROM outbox WHERE aggregate_id = $1`,
        [order.body.id],
      )
    ).rows[0];
    const publisher = ctx.get(OutboxPublisher);
    await publisher.publish(row);
    await publisher.publish(row);
    const queue = ctx.get<Queue>(getQueueToken(QueueName.Orders));
    const jobs = (await queue.getJobs(['delayed', 'waiting'])).filter(
      (j) => (j.data as { orderId: string }).orderId === order.body.id,
    );
    expect(jobs).toHaveLength(1);
    expect(jobs[0].id).toBe(row.id);
  });
});

describe('order creation does not depend on Redis', () => {
  let redis: PrivateRedis;
  let t: TestApp;
  let ctx: INestApplicationContext | undefined;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    t = await bootTestApp({ env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    await ctx?.close();
    await t?.close();
    await redis?.down();
  });

  it('accepts orders with Redis stopped; their events flow once Redis is back', async () => {
    const [alice] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 5 });
    await redis.down();

    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    expect(order.status).toBe(201);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 1 });

    await redis.up();
    ctx = await bootPublisherContext(t.config);
    const relay = new OutboxRelay(
      ctx.get(OutboxRepository),
      ctx.get(OutboxPublisher),
      ctx.get(KeyPrefixClaim),
    );
    expect((await relay.relayOnce()).published).toBeGreaterThanOrEqual(1);
    const queue = ctx.get<Queue>(getQueueToken(QueueName.Orders));
    const jobs = (await queue.getJobs(['delayed', 'waiting'])).filter(
      (j) => (j.data as { orderId: string }).orderId === order.body.id,
    );
    expect(jobs).toHaveLength(1);
  });
});

describe('the worker role end to end', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  // Both tests wait out a real 10 s reservation: their orders are placed here, one after the
  // other, so the two deadlines run down together instead of one test after the other.
  let alice: Buyer;
  let bob: Buyer;
  let expiring: { orderId: string; productId: string };
  let extended: { orderId: string; productId: string; newDeadline: number };

  beforeAll(async () => {
    t = await bootTestApp({ env: { RESERVATION_TTL_SECONDS: '10' } });
    worker = await bootTestWorker(t.config);
    [alice, bob] = await buyers(t.http, 2);

    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    expect(order.status).toBe(201);
    expiring = { orderId: order.body.id, productId: p };

    const q = await insertProduct(t.db.pool, { stock: 5 });
    const later = await placeOrder(t.http, bob, [{ productId: q, quantity: 1 }]);
    expect(later.status).toBe(201);
    // what a payment in flight does (PAYMENT_PENDING extends the hold): the job, delayed to the
    // original deadline (10 s), finds the order not yet due
    const { rows } = await t.db.pool.query<{ until: Date }>(
      `UPDATE orders SET reservation_expires_at = reservation_expires_at + interval '3 seconds'
        WHERE id = $1 RETURNING reservation_expires_at AS until`,
      [later.body.id],
    );
    extended = { orderId: later.body.id, productId: q, newDeadline: rows[0].until.getTime() };
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it('expires an unpaid order through outbox → BullMQ delayed job → processor', async () => {
    // the reservation lasts 10 s of wall-clock time (from beforeAll): nothing to drain before then
    const got = await waitFor(
      'the order to expire',
      () => t.http.get(`/v1/orders/${expiring.orderId}`, { token: alice.token }),
      {
        until: (res) => res.body.status === 'CANCELLED',
        timeoutMs: 20_000,
        intervalMs: 250,
      },
    );
    expect(got.body).toMatchObject({
      status: 'CANCELLED',
      cancellationReason: 'RESERVATION_EXPIRED',
    });
    expect(await stockOf(t.db.pool, expiring.productId)).toEqual({ onHand: 5, reserved: 0 });
  }, 30_000);

  it('an expiry job that finds the deadline extended looks again at the new deadline, not at the next sweep', async () => {
    const { orderId, productId, newDeadline } = extended; // (placed and extended in beforeAll)
    await waitFor(
      'the order to expire at its new deadline',
      async () => (await t.http.get(`/v1/orders/${orderId}`, { token: bob.token })).body.status,
      {
        until: (status) => status === 'CANCELLED',
        timeoutMs: newDeadline + 20_000 - Date.now(),
        intervalMs: 200,
      },
    );
    // the sweeper runs once a minute: expiring within seconds of the new deadline is the job's doing
    expect(Date.now() - newDeadline).toBeLessThan(5_000);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 0 });
  }, 40_000);
});
