import type { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import { registerCustomer } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import type { HttpResponse } from '../support/http';
import { Buyer, placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { TestApp, bootTestApp } from '../support/test-app';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { waitFor } from '../support/wait-for';

async function timed(request: () => Promise<HttpResponse>): Promise<HttpResponse & { ms: number }> {
  const started = performance.now();
  const res = await request();
  return { ...res, ms: performance.now() - started };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const breakerGauge = async (t: TestApp) =>
  Number(/^db_circuit_breaker_state (\d)$/m.exec(await t.metrics())?.[1]);

describe('database circuit breaker (a private PostgreSQL stopped and started again)', () => {
  const FAILURES = 3;
  let pg: PrivatePostgres;
  let t: TestApp;
  let buyer: Buyer;
  let product: string;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    t = await bootTestApp({
      db: await pg.migratedDatabase(),
      env: { DB_BREAKER_FAILURES: String(FAILURES), DB_BREAKER_HALF_OPEN_MS: '1000' },
    });
    const customer = await registerCustomer(t.http);
    buyer = { userId: customer.user.id, token: customer.accessToken };
    product = await insertProduct(t.db.pool, { stock: 100 });
  });
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    await pg?.destroy();
  });

  it('fails fast with 503 + Retry-After while the database is down, then half-opens and closes on recovery', async () => {
    expect((await placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }])).status).toBe(
      201,
    );
    const ready = await t.http.get('/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.details.database).toEqual({ status: 'up', breaker: 'closed' });
    expect(await breakerGauge(t)).toBe(0);

    await pg.stop();

    // the failures that open it: the database is unavailable, so 503 (never a 500)
    for (let i = 0; i < FAILURES; i++) {
      const res = await t.http.get('/v1/orders', { token: buyer.token });
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('SERVICE_UNAVAILABLE');
    }

    // open: a burst of orders and reads in parallel, all refused at once, nothing waits on the pool
    const started = performance.now();
    const burst = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 2 === 0
          ? placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }])
          : t.http.get('/v1/orders', { token: buyer.token }),
      ),
    );
    const burstMs = performance.now() - started;
    const driver = t.app.get(DataSource).driver;
    if (!(driver instanceof PostgresDriver)) throw new Error('expected the PostgreSQL driver');
    const pool: Pool = driver.master;
    expect(pool.waitingCount).toBe(0);
    for (const res of burst) {
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe('SERVICE_UNAVAILABLE');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    // not 30 connection attempts timing out (5 s each): 2 s was the bound, past it once on a
    // loaded machine (six files at once on two cores)
    expect(burstMs).toBeLessThan(4000);

    // each request on its own: answered at once — well under 100 ms here alone, 1 s the bound
    // for a loaded machine (the test's client shares the process; a jest worker stalled seconds
    // at a time on a slow day), against a 5 s connect timeout
    const single = [];
    const retriedKey = newKey();
    for (let i = 0; i < 9; i++) {
      single.push(
        await timed(() =>
          placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }], retriedKey),
        ),
      );
    }
    expect(single.every((r) => r.status === 503)).toBe(true);
    expect(median(single.map((r) => r.ms))).toBeLessThan(1_000);

    const down = await t.http.get('/health/ready');
    expect(down.status).toBe(503);
    // open — or half-open already, when this slow a machine took the half-open wait (1 s) since
    // the breaker opened: no request has probed yet, so both still refuse
    expect(down.body.details.database).toMatchObject({
      status: 'down',
      breaker: expect.stringMatching(/^(open|half-open)$/),
    });
    expect([1, 2]).toContain(await breakerGauge(t));

    await pg.start();

    // after the half-open wait one request probes; its success closes the breaker
    const answers: number[] = [];
    await waitFor(
      'the breaker to let a request through again',
      async () => {
        const res = await t.http.get('/v1/orders', { token: buyer.token });
        answers.push(res.status);
        return res;
      },
      { until: (res) => res.status === 200, timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(answers.filter((s) => s !== 503 && s !== 200)).toEqual([]); // refused fast until then
    // the key refused with 503 during the outage left nothing behind: its retry runs afresh
    const after = await placeOrder(
      t.http,
      buyer,
      [{ productId: product, quantity: 1 }],
      retriedKey,
    );
    expect(after.status).toBe(201);
    expect(after.headers.get('idempotent-replayed')).toBeNull();
    const readyAgain = await t.http.get('/health/ready');
    expect(readyAgain.status).toBe(200);
    expect(readyAgain.body.details.database).toEqual({ status: 'up', breaker: 'closed' });
    expect(await breakerGauge(t)).toBe(0);

    // nothing half-written: exactly the two orders that were answered 201, stock consistent
    const orders = await t.db.pool.query(`SELECT id FROM orders WHERE user_id = $1`, [
      buyer.userId,
    ]);
    expect(orders.rows).toHaveLength(2);
    expect(await stockOf(t.db.pool, product)).toEqual({ onHand: 100, reserved: 2 });
    await assertStockInvariants(t.db.pool, [product]);
  });
  it("readiness polls during an outage report it but do not open the breaker (a public route's polls are no traffic)", async () => {
    await waitFor('the breaker closed', async () => (await breakerGauge(t)) === 0 || undefined);
    await pg.stop();
    for (let i = 0; i < FAILURES * 3; i++) {
      const res = await t.http.get('/health/ready');
      expect([res.status, res.body.details.database.status]).toEqual([503, 'down']);
    }
    expect(await breakerGauge(t)).toBe(0);
    await pg.start();
    // back: the very next request is served (no DB_BREAKER_HALF_OPEN_MS of 503s after it)
    await waitFor(
      'the database back',
      async () => (await t.http.get('/health/ready')).status === 200 || undefined,
      { timeoutMs: 15_000 },
    );
    expect((await t.http.get('/v1/orders', { token: buyer.token })).status).toBe(200);
  });
  it('after an outage, a first request that waits on a row lock does not hold everyone else at 503', async () => {
    await pg.stop();
    for (let i = 0; i < FAILURES; i++) {
      expect((await t.http.get('/v1/orders', { token: buyer.token })).status).toBe(503);
    }
    expect(await breakerGauge(t)).toBe(1);
    await pg.start();

    // another process holds the product's inventory row (a slow transaction elsewhere)
    const holder = await waitFor(
      'the private PostgreSQL to accept connections',
      () => t.db.pool.connect(),
      {
        retryErrors: true,
      },
    );
    let checkout: Promise<HttpResponse> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
        product,
      ]);
      // the first caller once the breaker may half-open: a checkout that will wait on that lock
      // (under load a background statement may have probed first, failed on a server still
      // starting, and opened it again: answered 503 at once — then the next half-open)
      for (let attempt = 1; ; attempt++) {
        await new Promise((r) => setTimeout(r, 1100));
        checkout = placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }]);
        const first = await Promise.race([
          checkout.then((res) => res.status),
          untilWaitingOnLocks(t.db.pool, 'the checkout to wait on the inventory row').then(
            () => 'waiting' as const,
            () => 'never waited' as const,
          ),
        ]);
        if (first === 'waiting') break;
        expect({ attempt, first }).toEqual({ attempt, first: 503 });
        if (attempt === 5) throw new Error('the breaker never half-opened for the checkout');
      }
      // while it waits, the breaker is closed and other requests are served
      const read = await t.http.get('/v1/orders', { token: buyer.token });
      expect(read.status).toBe(200);
      expect(await breakerGauge(t)).toBe(0);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
    expect((await checkout).status).toBe(201);
    await assertStockInvariants(t.db.pool, [product]);
  });
});
