import { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import Redis from 'ioredis';
import { Session, TEST_PASSWORD, registerCustomer, signInLimitsAnswering } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { placeOrder } from '../support/orders';
import { OutboxRelay } from '../../src/outbox/outbox.relay';
import { REDIS } from '../../src/redis/redis.module';
import { JOB_QUEUE, QueueName } from '../../src/queue/queues';
import { SCHEDULES } from '../../src/queue/schedulers';
import { PrivateRedis } from '../support/private-redis';
import { SmtpCapture } from '../support/smtp-capture';
import { expectProblem } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

const xff = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });

describe('Redis outage: a private redis-server stopped for a while, then started again', () => {
  let redis: PrivateRedis;
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Session;
  let redisDown = false;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    smtp = await SmtpCapture.start();
    t = await bootTestApp({
      env: {
        REDIS_URL: redis.url,
        RATE_LIMIT_ENABLED: 'true',
        // a stalled Redis given up on after 500 ms (the production default: test apps wait
        // longer, test/support/env.ts)
        RATE_LIMIT_STORE_TIMEOUT_MS: '500',
        TRUST_PROXY: '127.0.0.1',
        SMTP_URL: smtp.url,
      },
    });
    worker = await bootTestWorker(t.config);
    await signInLimitsAnswering(t.http, xff('10.250.0.1').headers);
    alice = await registerCustomer(t.http, xff('10.9.0.1'));
  });
  afterAll(async () => {
    if (redisDown) await redis.up(); // a failed test must not leave the worker unable to close
    await worker?.close();
    await t?.close();
    await smtp?.stop();
    await redis?.down();
  });

  it('a stalled Redis (socket open, no answers) delays no catalog read', async () => {
    const product = await insertProduct(t.db.pool, { stock: 3 });
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '6000', 'ALL'); // every client's commands now hang
      const started = performance.now();
      const detail = await t.http.get(`/v1/products/${product}`);
      const list = await t.http.get('/v1/products?limit=2');
      const elapsed = performance.now() - started;
      expect(detail.status).toBe(200);
      expect(list.status).toBe(200);
      // bounded by the cache's and the rate limiter's Redis timeouts, not by the 6 s stall (with
      // room for a loaded machine: a jest worker stalled seconds at a time on a slow day)
      expect(elapsed).toBeLessThan(5_500);
      await admin.ping(); // answered once the pause is over
    } finally {
      admin.disconnect();
    }
  });

  it('readiness stays 200 while the Redis client replaces a connection Redis dropped (Redis answering all along)', async () => {
    const client = t.app.get<Redis>(REDIS);
    await waitFor('the client connected', () => client.status, { until: (s) => s === 'ready' });
    const admin = new Redis(redis.url);
    try {
      await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes'); // a failover's or a restart's cut
      await waitFor('the client to notice', () => client.status, {
        until: (s) => s !== 'ready',
        intervalMs: 1,
      });
      const ready = await t.http.get('/health/ready');
      expect([ready.status, ready.body.details?.redis?.status]).toEqual([200, 'up']);
    } finally {
      admin.disconnect();
    }
  });

  it("Redis refusing writes (OOM at maxmemory, noeviction) spends no event's attempts; the events go out once it accepts", async () => {
    const buyer = { userId: alice.user.id, token: alice.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }]);
    expect(order.status).toBe(201);
    const orderId = order.body.id as string;
    // its events published first, as usual: what follows is about the refused writes alone
    await waitFor(
      "the order's events to be published",
      async () =>
        (
          await t.db.pool.query(
            `SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = $1 AND status <> 'published'`,
            [orderId],
          )
        ).rows[0].n as number,
      { until: (n) => n === 0 },
    );
    const before = (
      await t.db.pool.query(`SELECT attempts FROM outbox WHERE aggregate_id = $1 ORDER BY id`, [
        orderId,
      ])
    ).rows;
    const admin = new Redis(redis.url);
    try {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.config('SET', 'maxmemory', '1'); // every write is now refused: "OOM command not allowed"
      await t.db.pool.query(
        `UPDATE outbox SET status = 'pending', next_attempt_at = now() WHERE aggregate_id = $1`,
        [orderId],
      );
      const relay = worker.get(OutboxRelay);
      // more rounds than an event's attempts, each with the event due again
      for (let i = 0; i < 12; i++) {
        await relay.relayOnce();
        await t.db.pool.query(
          `UPDATE outbox SET next_attempt_at = now() WHERE aggregate_id = $1 AND status = 'pending'`,
          [orderId],
        );
      }
      // (read between claims: the worker's own relay runs beside these rounds, and its claim
      // counts an attempt until its release gives it back — a count spent stays, and never matches)
      const held = await waitFor(
        'the events to be held, their attempts unspent',
        async () =>
          (
            await t.db.pool.query(
              `SELECT status, attempts FROM outbox WHERE aggregate_id = $1 ORDER BY id`,
              [orderId],
            )
          ).rows as { status: string; attempts: number }[],
        {
          until: (rows) =>
            rows.length === before.length &&
            rows.every((r, i) => r.status === 'pending' && r.attempts === before[i].attempts),
        },
      );
      expect(held.length).toBeGreaterThan(0);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
      admin.disconnect();
    }
    const left = await waitFor(
      "the order's events to be published",
      async () =>
        (
          await t.db.pool.query(
            `SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = $1 AND status <> 'published'`,
            [orderId],
          )
        ).rows[0].n as number,
      { until: (n) => n === 0, timeoutMs: 30_000 },
    );
    expect(left).toBe(0);
  }, 60_000);

  it('keeps selling while Redis is down and catches up without a restart once it is back', async () => {
    const buyer = { userId: alice.user.id, token: alice.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 10 });
    // cached now (a first miss is kept nowhere, the second is)
    for (let i = 0; i < 2; i++)
      expect((await t.http.get(`/v1/products/${product}`)).status).toBe(200);

    await redis.down();
    redisDown = true;
    const outageStarted = Date.now();

    // catalog reads come from PostgreSQL
    const detail = await t.http.get(`/v1/products/${product}`);
    expect(detail.status).toBe(200);
    expect(detail.body.id).toBe(product);
    expect((await t.http.get('/v1/products?limit=5')).status).toBe(200);

    // orders and payments work: their events wait in the outbox
    const order = await placeOrder(t.http, buyer, [{ productId: product, quantity: 2 }]);
    expect(order.status).toBe(201);
    const orderId = order.body.id as string;
    const intent = await t.http.post(
      `/v1/orders/${orderId}/payment`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(intent.status).toBe(201);
    const confirmed = await t.http.post(
      `/v1/dev/payment-intents/${intent.body.paymentIntentId}/confirm`,
      { outcome: 'succeeded' },
      { token: buyer.token },
    );
    expect(confirmed.status).toBe(200);

    // login fails closed, other routes fail open
    const login = await t.http.post(
      '/v1/auth/login',
      { email: alice.email, password: TEST_PASSWORD },
      xff('10.9.0.2'),
    );
    // a dependency down, not a limit reached: 503 with Retry-After (clients built from the
    // OpenAPI document must not tell the person they tried too often)
    expectProblem(login, 503, 'SERVICE_UNAVAILABLE');
    expect(login.headers.get('retry-after')).toBeTruthy();
    expect(login.headers.get('ratelimit')).toBeNull();
    expect((await t.http.get('/v1/me', { token: buyer.token, ...xff('10.9.0.2') })).status).toBe(
      200,
    );

    // readiness names the dependency that is down
    const ready = await t.http.get('/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.details.redis.status).toBe('down');
    expect(ready.body.details.database.status).toBe('up');

    // none of that waited on Redis
    expect(Date.now() - outageStarted).toBeLessThan(10_000);

    // the relay neither hangs on the unreachable queues nor spends the events' attempts
    const relay = worker.get(OutboxRelay);
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      expect(await relay.relayOnce()).toMatchObject({ published: 0, unavailable: true });
      // (its 200 ms look at the connection, with room for a stall of this process)
      expect(performance.now() - started).toBeLessThan(2_500);
    }
    const held = await t.db.pool.query(
      `SELECT topic, status, attempts FROM outbox WHERE aggregate_id = $1 ORDER BY topic`,
      [orderId],
    );
    expect(held.rows.length).toBeGreaterThan(0);
    for (const r of held.rows) expect(r).toMatchObject({ status: 'pending', attempts: 0 });

    await redis.up();
    redisDown = false;

    // the outbox drains into the queues, and the emails of the paid order go out
    const mails = await smtp.awaitMessages(() => smtp.forOrder(orderId), 2, 60_000);
    expect(mails.map((m) => m.subject).sort()).toEqual([
      `Order ${orderId.slice(0, 8).toUpperCase()} confirmed`,
      `Receipt for order ${orderId.slice(0, 8).toUpperCase()}`,
    ]);
    const backlog = await waitFor(
      'the outbox backlog to be published',
      async () =>
        (await t.db.pool.query(`SELECT count(*)::int AS n FROM outbox WHERE status <> 'published'`))
          .rows[0].n as number,
      { until: (n) => n === 0, timeoutMs: 30_000 },
    );
    expect(backlog).toBe(0);
    const createdEvent = await t.db.pool.query(
      `SELECT id FROM outbox WHERE aggregate_id = $1 AND topic = 'order.created'`,
      [orderId],
    );
    const expiryJob = await worker
      .get<Queue>(getQueueToken(QueueName.Orders))
      .getJob(createdEvent.rows[0].id);
    expect(expiryJob?.data).toEqual({ orderId });
    const paid = await t.http.get(`/v1/orders/${orderId}`, { token: buyer.token });
    expect(paid.body.status).toMatch(/^(PAID|CONFIRMED)$/);

    // throttling counts again (login answers, with rate-limit headers), readiness is green
    const again = await waitFor(
      'a login to be answered 200 again',
      () =>
        t.http.post(
          '/v1/auth/login',
          { email: alice.email, password: TEST_PASSWORD },
          xff('10.9.0.3'),
        ),
      { until: (r) => r.status === 200, timeoutMs: 15_000 },
    );
    expect(again.status).toBe(200);
    expect(again.headers.get('ratelimit')).toBeTruthy();
    const readyAgain = await waitFor('readiness to be green', () => t.http.get('/health/ready'), {
      until: (r) => r.status === 200,
      timeoutMs: 15_000,
    });
    expect(readyAgain.status).toBe(200);

    // the repeatable jobs (sweepers, reconciliation) are back although Redis lost them
    for (const name of new Set(SCHEDULES.map((s) => JOB_QUEUE[s.job]))) {
      const queue = worker.get<Queue>(getQueueToken(name));
      const expected = SCHEDULES.filter((s) => JOB_QUEUE[s.job] === name)
        .map((s) => s.job)
        .sort();
      const found = await waitFor(
        `the ${name} job schedulers to be registered again`,
        async () => (await queue.getJobSchedulers()).map((j) => j.key).sort(),
        { until: (keys) => keys.length === expected.length, timeoutMs: 15_000 },
      );
      expect(found).toEqual(expected);
    }

    // and the catalog cache stores pages in Redis again (from a page's second miss on), once its
    // own client (node-redis, under @keyv/redis: it reconnects every <= 2 s) is back too
    const admin = new Redis(redis.url);
    try {
      const cached = await waitFor(
        'the catalog cache to store a page in Redis again',
        async () => {
          for (let i = 0; i < 2; i++)
            expect((await t.http.get('/v1/products?limit=3')).status).toBe(200);
          return admin.keys(`${t.config.redis.keyPrefix}:catalog:version:*`);
        },
        { until: (keys) => keys.length > 0, timeoutMs: 15_000 },
      );
      expect(cached.length).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
    }
  });
});
