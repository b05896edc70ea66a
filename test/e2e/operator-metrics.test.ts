import { INestApplicationContext, Logger } from '@nestjs/common';
import { Queue } from 'bullmq';
import { Clock } from '../../src/common/time/clock';
import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { oldestWaitingAgeSeconds, readWaitingJobs } from '../../src/metrics/queue-age';
import { MetricsService } from '../../src/metrics/metrics.service';
import { OutboxRepository } from '../../src/outbox/outbox.repository';
import { MeteredGateway } from '../../src/payments/metered.gateway';
import { PAYMENT_GATEWAY, PaymentGateway } from '../../src/payments/payment-gateway';
import { StripeGateway } from '../../src/payments/stripe.gateway';
import { bullPrefix } from '../../src/queue/redis-connection';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, payOrder, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * What the engineer on call reads from /metrics to say how late the backlog is: the oldest pending
 * outbox row's age, each queue's oldest waiting job's; and whether the payment provider refuses
 * our key — on the real database, Redis, BullMQ and the Stripe SDK (against the fake Stripe).
 */
describe('metrics an operator reads in an incident', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let worker: INestApplicationContext | undefined;
  let alice: Buyer;

  /** A sample of a page (this app's by default; undefined when the page has none). */
  const sample = async (series: string, page?: string) => {
    const escaped = series.replace(/[{}]/g, (c) => `\\${c}`);
    const found = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(page ?? (await t.metrics()))?.[1];
    return found === undefined ? undefined : Number(found);
  };
  const calls = (operation: string, outcome: string) =>
    `payment_provider_calls_total{operation="${operation}",outcome="${outcome}"}`;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    t = await bootTestApp({
      env: stripe.env(),
    });
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await stripe?.close();
  });

  it("outbox_oldest_pending_age_seconds is on the database's clock: events written by an API whose clock is 90 s behind, or ahead, read as just written", async () => {
    // the API alone (no relay): the events stay pending
    const repo = t.app.get(OutboxRepository);
    const ageOf = async (id: string) =>
      Number(
        (
          await t.db.pool.query<{ age: number }>(
            `SELECT extract(epoch FROM statement_timestamp() - created_at)::float8 AS age
               FROM outbox WHERE id = $1`,
            [id],
          )
        ).rows[0].age,
      );
    const added: string[] = [];
    try {
      for (const skewMs of [-90_000, 90_000]) {
        jest.spyOn(t.app.get(Clock), 'now').mockImplementation(() => new Date(Date.now() + skewMs));
        // the checkout's event (OutboxRepository.statement, in the order's statement)
        const p = await insertProduct(t.db.pool, { stock: 5 });
        const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
        expect(order.status).toBe(201);
        const { rows } = await t.db.pool.query<{ id: string }>(
          `SELECT id FROM outbox WHERE aggregate_id = $1`,
          [order.body.id],
        );
        expect(rows).toHaveLength(1);
        // and an event added in a transaction's statements (OutboxRepository.add)
        added.push(await repo.add('payment.event', null, { eventId: `evt_skew_${newKey()}` }));
        for (const id of [rows[0].id, added[added.length - 1]]) {
          const age = await ageOf(id);
          expect([skewMs, age >= 0 && age < 5]).toEqual([skewMs, true]);
        }
        jest.restoreAllMocks();
      }
      // the page: the oldest pending event seconds old, not 90 (its read is the first, not a cached one)
      const age = await sample('outbox_oldest_pending_age_seconds');
      expect(age).toBeGreaterThan(0);
      expect(age).toBeLessThan(10);
    } finally {
      jest.restoreAllMocks();
      // (not for the relay to publish: no such webhook event)
      await t.db.pool.query(`DELETE FROM outbox WHERE id = ANY($1::uuid[])`, [added]);
    }
  }, 30_000);

  it("outbox_oldest_pending_age_seconds: above 0 while an order's event waits for the relay, 0 once the relay has published it", async () => {
    // the API alone: no relay runs, the order's event stays pending
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    expect(order.status).toBe(201);
    const waiting = await waitFor(
      'the pending event to be seen waiting',
      () => sample('outbox_oldest_pending_age_seconds'),
      { until: (age) => age !== undefined && age > 0 },
    );
    expect(waiting).toBeLessThan(60);
    // the worker's relay publishes it: nothing pending, 0 (a count serves scrapes up to 5 s)
    worker = await bootTestWorker(t.config);
    await waitFor('the outbox to be drained', () => sample('outbox_oldest_pending_age_seconds'), {
      until: (age) => age === 0,
      timeoutMs: 20_000,
    });
    expect(await sample('outbox_backlog{status="pending"}')).toBe(0);
  }, 40_000);

  describe("queue_oldest_waiting_age_seconds (BullMQ's own keys)", () => {
    let redis: Redis;
    const prefix = `opsmetrics${randomBytes(3).toString('hex')}:bull`;
    const queues: Queue[] = [];
    const queue = (name: string) => {
      const q = new Queue(name, { connection: redisOptions(), prefix });
      queues.push(q);
      return q;
    };
    const redisOptions = () => {
      const url = new URL(t.config.redis.url);
      return {
        host: url.hostname,
        port: Number(url.port || 6379),
        db: Number(url.pathname.slice(1) || 0),
      };
    };
    /** The age the page would show for each of `names` now. */
    const ages = async (...names: string[]) =>
      (await readWaitingJobs(redis, prefix, names)).map((jobs) =>
        oldestWaitingAgeSeconds(jobs, Date.now()),
      );

    beforeAll(() => {
      redis = new Redis(t.config.redis.url);
    });
    afterAll(async () => {
      for (const q of queues) await q.obliterate({ force: true }).catch(() => undefined);
      await Promise.all(queues.map((q) => q.close()));
      redis?.disconnect();
    });

    it('an empty queue is 0; a job added to wait counts from its creation', async () => {
      expect(await ages('never-used')).toEqual([0]);
      const q = queue('plain');
      await q.add('j', {}, { timestamp: Date.now() - 120_000 });
      const [age] = await ages('plain');
      expect(age).toBeGreaterThanOrEqual(120);
      expect(age).toBeLessThan(130);
    });

    it('a delayed job counts from the end of its delay, not its creation — in `delayed` still (no worker has fetched it), promoted, and once a worker has promoted it (BullMQ zeroes the delay in its hash)', async () => {
      const q = queue('delayed');
      const job = await q.add('j', {}, { delay: 600_000, timestamp: Date.now() - 630_000 });
      // due 30 s ago, no worker to move it to `wait`: waiting for one all the same
      expect(await q.getJobCounts('wait', 'delayed')).toEqual({ wait: 0, delayed: 1 });
      const [overdue] = await ages('delayed');
      expect(overdue).toBeGreaterThanOrEqual(30);
      expect(overdue).toBeLessThan(40);
      await q.promoteJobs();
      const [promoted] = await ages('delayed');
      expect(promoted).toBeGreaterThanOrEqual(30);
      expect(promoted).toBeLessThan(40);
      // as a worker's promotion leaves it (promoteDelayedJobs: `HSET delay 0`): the same age
      await redis.hset(`${prefix}:delayed:${job.id}`, 'delay', 0);
      const [zeroed] = await ages('delayed');
      expect(zeroed).toBeGreaterThanOrEqual(30);
      expect(zeroed).toBeLessThan(40);
    });

    it("no worker consuming: a job past its delay stays in `delayed` and counts from when it was due; one not yet due does not count, nor does a job scheduler's next run before its time", async () => {
      const q = queue('overdue');
      const scheduled = queue('scheduled');
      // (due in 4 s: a stall of this process between adding them and the first look must not
      // make them due already)
      await q.add('expire-reservation', {}, { delay: 4_000 });
      await q.add('later', {}, { delay: 600_000 });
      await scheduled.upsertJobScheduler('sweep', {
        every: 600_000,
        startDate: Date.now() + 4_000,
      });
      expect(await scheduled.getJobCounts('wait', 'delayed')).toEqual({ wait: 0, delayed: 1 });
      expect(await ages('overdue', 'scheduled')).toEqual([0, 0]); // neither due yet
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      // due 1.5 s ago: no worker has fetched them, both still in `delayed`
      expect(await q.getJobCounts('wait', 'delayed')).toEqual({ wait: 0, delayed: 2 });
      expect(await scheduled.getJobCounts('wait', 'delayed')).toEqual({ wait: 0, delayed: 1 });
      for (const age of await ages('overdue', 'scheduled')) {
        expect(age).toBeGreaterThanOrEqual(1.4);
        expect(age).toBeLessThan(10);
      }
      // only a job not due for 10 minutes left: 0
      const [due] = await q.getDelayed(0, 0);
      await due.remove();
      expect(await q.getJobCounts('delayed')).toEqual({ delayed: 1 });
      expect(await ages('overdue')).toEqual([0]);
    });

    it('a job back in wait after an attempt counts from that attempt', async () => {
      const q = queue('retried');
      const job = await q.add('j', {}, { timestamp: Date.now() - 86_400_000 });
      await redis.hset(`${prefix}:retried:${job.id}`, 'processedOn', Date.now() - 15_000);
      const [age] = await ages('retried');
      expect(age).toBeGreaterThanOrEqual(15);
      expect(age).toBeLessThan(25);
    });

    it('prioritized jobs: the oldest of the highest and the lowest priority, a starved one too', async () => {
      const q = queue('prioritized');
      await q.add('low', {}, { priority: 50, timestamp: Date.now() - 300_000 });
      await q.add('low-newer', {}, { priority: 50 });
      await q.add('high', {}, { priority: 1, timestamp: Date.now() - 10_000 });
      expect(await redis.zcard(`${prefix}:prioritized:prioritized`)).toBe(3);
      const [age] = await ages('prioritized');
      expect(age).toBeGreaterThanOrEqual(300);
      expect(age).toBeLessThan(310);
    });

    it("a paused queue's jobs are still waiting", async () => {
      const q = queue('paused');
      await q.pause();
      await q.add('j', {}, { timestamp: Date.now() - 45_000 });
      expect(await redis.llen(`${prefix}:paused:paused`)).toBe(1);
      const [age] = await ages('paused');
      expect(age).toBeGreaterThanOrEqual(45);
      expect(age).toBeLessThan(55);
    });

    it("the API's page has it for every queue of the app, from the app's own keys", async () => {
      const email = new Queue('email', {
        connection: redisOptions(),
        prefix: bullPrefix(t.config.redis.keyPrefix),
      });
      const orders = new Queue('orders', {
        connection: redisOptions(),
        prefix: bullPrefix(t.config.redis.keyPrefix),
      });
      try {
        await worker?.close(); // (no worker to take the job)
        worker = undefined;
        const job = await email.add('probe', {}, { timestamp: Date.now() - 200_000 });
        // as an expiry job the reviewer saw uncounted: delayed 300 ms, no worker to fetch it
        const expiry = await orders.add('probe', {}, { delay: 300 });
        try {
          const age = await sample('queue_oldest_waiting_age_seconds{queue="email"}');
          expect(age).toBeGreaterThanOrEqual(200);
          expect(age).toBeLessThan(260);
          for (const name of ['payments', 'catalog', 'maintenance'])
            expect(await sample(`queue_oldest_waiting_age_seconds{queue="${name}"}`)).toBeDefined();
          await new Promise((resolve) => setTimeout(resolve, 1_500));
          expect(await expiry.getState()).toBe('delayed');
          // (at least its 1.2 s; a scheduler's sweep left due by the closed worker may be older)
          expect(await sample('queue_oldest_waiting_age_seconds{queue="orders"}')).toBeGreaterThan(
            1,
          );
        } finally {
          await job.remove();
          await expiry.remove();
        }
      } finally {
        await email.close();
        await orders.close();
      }
    });
  });

  describe('payment_provider_calls_total', () => {
    let errors: jest.SpyInstance;
    beforeEach(() => {
      errors = jest.spyOn(Logger.prototype, 'error');
    });
    afterEach(() => errors.mockRestore());
    /** The error lines about a refused key logged since the test began. */
    const keyLines = () =>
      errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('STRIPE_SECRET_KEY'));

    it('a Stripe 401 (a rotated key) when a payment starts: 503 as before, counted as auth_failed (not unavailable) in the API, and one error line saying to check STRIPE_SECRET_KEY', async () => {
      const p = await insertProduct(t.db.pool, { stock: 5 });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      const pay = () =>
        t.http.post(
          `/v1/orders/${order.body.id}/payment`,
          {},
          { token: alice.token, idempotencyKey: newKey() },
        );
      stripe.failNext('/v1/payment_intents', 401, 5);
      try {
        const refused = await pay();
        expect([refused.status, refused.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      } finally {
        stripe.failNext('/v1/payment_intents', 0, 0);
      }
      expect(await sample(calls('create_intent', 'auth_failed'))).toBe(1);
      expect(await sample(calls('create_intent', 'unavailable'))).toBe(0);
      expect(keyLines()).toEqual([
        expect.stringContaining('on create_intent: check STRIPE_SECRET_KEY'),
      ]);
      // the key mended: the customer's retry goes through, ok
      expect((await pay()).status).toBe(201);
      expect(await sample(calls('create_intent', 'ok'))).toBe(1);
    }, 30_000);

    it("a 403 in the worker's call is counted in the worker's registry, not the API's", async () => {
      worker ??= await bootTestWorker(t.config);
      const intent = (
        await t.app.get<symbol, PaymentGateway>(PAYMENT_GATEWAY).createIntent({
          orderId: '00000000-0000-4000-8000-000000000001',
          shop: '00000000-0000-4000-8000-000000000002',
          amount: 1_000,
          currency: 'INR',
          idempotencyKey: newKey(),
        })
      ).id;
      stripe.failNext(`/v1/payment_intents/${intent}`, 403, 3);
      try {
        await expect(
          worker.get<symbol, PaymentGateway>(PAYMENT_GATEWAY).retrieveIntent(intent),
        ).rejects.toMatchObject({ kind: 'unavailable', authFailed: true });
      } finally {
        stripe.failNext(`/v1/payment_intents/${intent}`, 0, 0);
      }
      const workerPage = await worker.get(MetricsService).render();
      expect(await sample(calls('retrieve_intent', 'auth_failed'), workerPage)).toBe(1);
      expect(await sample(calls('retrieve_intent', 'auth_failed'))).toBe(0);
      expect(keyLines()).toEqual([expect.stringContaining('on retrieve_intent')]);
    }, 30_000);

    it('a key Stripe does not know (its answer quotes it, masked): the error line has no part of it', async () => {
      const wrong = `sk_test_rotated_${newKey().replace(/-/g, '')}`;
      const gateway = new MeteredGateway(
        new StripeGateway(wrong, stripe.url),
        new MetricsService(),
      );
      const refused = await gateway.retrieveIntent('pi_anything').catch((e: Error) => e);
      expect(refused).toMatchObject({ authFailed: true });
      const [line] = keyLines();
      expect(line).toContain('check STRIPE_SECRET_KEY');
      for (const part of [wrong, wrong.slice(0, 8), wrong.slice(-4), '****'])
        expect([part, line.includes(part)]).toEqual([part, false]);
      // nor the error the callers log
      expect((refused as Error).message).toBe('Invalid API Key provided: [key]');
    });

    it('the simulated gateway (development, no Stripe key) is counted too, and still pays', async () => {
      const dev = await bootTestApp();
      try {
        const [bob] = await buyers(dev.http, 1);
        const p = await insertProduct(dev.db.pool, { stock: 5 });
        const order = await placeOrder(dev.http, bob, [{ productId: p, quantity: 1 }]);
        await payOrder(dev.http, bob, order.body.id);
        expect(await sample(calls('create_intent', 'ok'), await dev.metrics())).toBe(1);
      } finally {
        await dev.close();
      }
    }, 30_000);
  });
});
