import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { TransactionHost } from '../../src/database/transaction-host';
import { SoldOutMarks } from '../../src/inventory/sold-out';
import { REDIS } from '../../src/redis/redis.module';
import { createAdmin } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import type { HttpResponse } from '../support/http';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * Issue 14, item 1: a checkout of products known to be sold out is refused without a database
 * transaction (CheckoutSoldOutGuard + SoldOutMarks), by every API instance, and the knowledge
 * never refuses a buyer once a release or restock has made a unit available again.
 *
 * Two API processes' worth of application (two Nest apps, one database, one Redis prefix).
 */
describe('sold-out fast path', () => {
  let a: TestApp;
  let b: TestApp;
  let crowd: Buyer[];
  let admin: string;
  const env = { RATE_LIMIT_ENABLED: 'false', PURCHASE_LIMIT_OPEN_ORDERS: '0', PURCHASE_LIMIT_UNITS_PER_PRODUCT: '0' };

  beforeAll(async () => {
    a = await bootTestApp({ env });
    b = await bootTestApp({ db: a.db, env: { ...env, REDIS_KEY_PREFIX: a.config.redis.keyPrefix } });
    crowd = await buyers(a.http, 48);
    admin = (await createAdmin(a)).accessToken;
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const instances = () => [a, b];

  async function fastRefusals(t: TestApp): Promise<number> {
    const m = /^checkout_sold_out_fast_refusals_total (\d+)$/m.exec(await t.metrics());
    return m ? Number(m[1]) : 0;
  }
  const totalFastRefusals = async () => (await fastRefusals(a)) + (await fastRefusals(b));

  /** Counts every transaction either instance opens from now on. */
  function countTransactions(): { count: () => number; restore: () => void } {
    const spies = instances().flatMap((t) => {
      const tx = t.app.get(TransactionHost);
      return [jest.spyOn(tx, 'run'), jest.spyOn(tx, 'runOpening'), jest.spyOn(tx, 'runOwn')];
    });
    return {
      count: () => spies.reduce((n, s) => n + s.mock.calls.length, 0),
      restore: () => spies.forEach((s) => s.mockRestore()),
    };
  }

  /** Checks out until the fast path refuses one (the marks are written after the answers). */
  async function untilFastPathRefuses(t: TestApp, productId: string, buyer: Buyer): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const before = await fastRefusals(t);
      const res = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
      expect(res.status).toBe(409);
      if ((await fastRefusals(t)) > before) return;
    }
    throw new Error('the fast path never refused');
  }

  it('refuses a sold-out SKU in both instances without a transaction, with the normal path\'s 409', async () => {
    const productId = await insertProduct(a.db.pool, { stock: 3 });
    // a crowd on both instances sells it out through the normal path
    const sale = await Promise.all(
      crowd.slice(0, 24).map((buyer, i) => placeOrder(instances()[i % 2].http, buyer, [{ productId, quantity: 1 }])),
    );
    expect(sale.filter((r) => r.status === 201)).toHaveLength(3);
    const normal = sale.find((r) => r.status === 409)!;
    expect(normal.body.products).toEqual([{ productId, requested: 1, available: 0 }]);

    await untilFastPathRefuses(a, productId, crowd[30]);
    const refusedBefore = await totalFastRefusals();
    const tx = countTransactions();
    let refusals: HttpResponse[];
    try {
      refusals = await Promise.all(
        crowd.slice(24, 48).map((buyer, i) =>
          placeOrder(instances()[i % 2].http, buyer, [{ productId, quantity: 1 + (i % 3) }]),
        ),
      );
      // not one transaction opened for 24 refusals, in either instance
      expect(tx.count()).toBe(0);
    } finally {
      tx.restore();
    }
    expect(await totalFastRefusals()).toBe(refusedBefore + 24);
    expect(await fastRefusals(b)).toBeGreaterThan(0);
    refusals.forEach((r, i) => {
      expect(r.status).toBe(409);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      // the same problem as the normal path's, field for field
      const { requestId: _r1, products, ...rest } = r.body;
      const { requestId: _r2, products: _p, ...normalRest } = normal.body;
      expect(rest).toEqual(normalRest);
      expect(products).toEqual([{ productId, requested: 1 + (i % 3), available: 0 }]);
    });
    expect(await stockOf(a.db.pool, productId)).toEqual({ onHand: 3, reserved: 3 });
  }, 120_000);

  it('a cancel in one instance lets the next buyer in the other one buy at once', async () => {
    const productId = await insertProduct(a.db.pool, { stock: 1 });
    const first = await placeOrder(a.http, crowd[0], [{ productId, quantity: 1 }]);
    expect(first.status).toBe(201);
    await untilFastPathRefuses(b, productId, crowd[1]);

    const cancel = await a.http.post(`/v1/orders/${first.body.id}/cancel`, {}, { token: crowd[0].token, idempotencyKey: newKey() });
    expect(cancel.status).toBe(200);
    // before the fix this is the fast path's 409: the release has to clear the mark everywhere
    const next = await placeOrder(b.http, crowd[2], [{ productId, quantity: 1 }]);
    expect(next.status).toBe(201);
    expect(await stockOf(a.db.pool, productId)).toEqual({ onHand: 1, reserved: 1 });
  }, 60_000);

  it('under a flood of buyers on both instances, a cancel and a restock: nobody refused while a unit was free', async () => {
    const productId = await insertProduct(a.db.pool, { stock: 4 });
    const held = await Promise.all(crowd.slice(0, 4).map((buyer) => placeOrder(a.http, buyer, [{ productId, quantity: 1 }])));
    expect(held.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    await untilFastPathRefuses(a, productId, crowd[4]);
    const fastBefore = await totalFastRefusals();

    interface Attempt { start: number; end: number; status: number }
    const attempts: Attempt[] = [];
    const events: { start: number; end: number }[] = [];
    let stop = false;
    const flood = (t: TestApp, buyer: Buyer) =>
      (async () => {
        while (!stop) {
          const start = performance.now();
          const res = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
          attempts.push({ start, end: performance.now(), status: res.status });
        }
      })();
    const sold = () => attempts.filter((x) => x.status === 201).length;
    const until = (what: string, cond: () => boolean) =>
      waitFor(what, cond, { timeoutMs: 10_000, intervalMs: 5, context: () => `${attempts.length} attempts, ${sold()} sold` });
    const timed = async (work: () => Promise<HttpResponse>) => {
      const start = performance.now();
      const res = await work();
      events.push({ start, end: performance.now() });
      return res;
    };

    const floods = crowd.slice(10, 22).map((buyer, i) => flood(instances()[i % 2], buyer));
    try {
      await until('40 attempts', () => attempts.length >= 40);
      const cancel = await timed(() =>
        a.http.post(`/v1/orders/${held[0].body.id}/cancel`, {}, { token: crowd[0].token, idempotencyKey: newKey() }),
      );
      expect(cancel.status).toBe(200);
      await until('the released unit to sell', () => sold() >= 1);
      const more = attempts.length;
      await until('40 more attempts', () => attempts.length >= more + 40);
      const restock = await timed(() =>
        b.http.post(`/v1/admin/products/${productId}/stock-adjustments`, { delta: 2, reason: 'delivery' }, { token: admin }),
      );
      expect(restock.status).toBe(200);
      await until('the restocked units to sell', () => sold() >= 3);
      const after = attempts.length;
      await until('40 more attempts after the restock', () => attempts.length >= after + 40);
    } finally {
      stop = true;
      await Promise.all(floods);
    }

    expect(attempts.filter((x) => x.status !== 201 && x.status !== 409)).toEqual([]);
    expect(sold()).toBe(3); // the released unit and the two restocked ones, no more
    expect(await stockOf(a.db.pool, productId)).toEqual({ onHand: 6, reserved: 6 });
    await assertStockInvariants(a.db.pool, [productId]);
    // the fast path did the refusing while sold out, in the flood as well
    expect((await totalFastRefusals()) - fastBefore).toBeGreaterThan(40);

    // Each release made a unit free from (at the latest) the end of its request until the
    // commit of the buyer who took it, which cannot precede that buyer's start. No refusal may
    // fall wholly inside that window: the documented bound in normal operation is the clear's
    // Redis round trip right after the commit, well before the releasing request's answer.
    for (const e of events) {
      const takers = attempts.filter((x) => x.status === 201 && x.end > e.end);
      const freeUntil = Math.min(...takers.map((x) => Math.max(x.start, e.end)));
      const refusedWhileFree = attempts.filter((x) => x.status === 409 && x.start >= e.end && x.end <= freeUntil);
      expect(refusedWhileFree).toEqual([]);
    }
  }, 120_000);

  it('keeps the idempotency semantics: a stored 201 replays, a refused key runs afresh after a restock', async () => {
    const productId = await insertProduct(a.db.pool, { stock: 1 });
    const [buyer, other] = [crowd[40], crowd[41]];
    const bought = newKey();
    const first = await placeOrder(a.http, buyer, [{ productId, quantity: 1 }], bought);
    expect(first.status).toBe(201);
    await untilFastPathRefuses(a, productId, crowd[42]);

    // the buyer never saw the 201 and retries, in the other instance: the stored answer, not a 409
    const replay = await placeOrder(b.http, buyer, [{ productId, quantity: 1 }], bought);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(first.body.id);
    // the same key with another body is still 422, not the fast path's 409
    const reused = await placeOrder(b.http, buyer, [{ productId, quantity: 2 }], bought);
    expect(reused.status).toBe(422);
    expect(reused.body.code).toBe('IDEMPOTENCY_KEY_REUSED');

    // a key refused by the fast path stored nothing: after a restock its retry runs afresh
    const key = newKey();
    const fastBefore = await totalFastRefusals();
    const refused = await placeOrder(a.http, other, [{ productId, quantity: 1 }], key);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('INSUFFICIENT_STOCK');
    expect(await totalFastRefusals()).toBe(fastBefore + 1);
    const restock = await a.http.post(
      `/v1/admin/products/${productId}/stock-adjustments`,
      { delta: 1, reason: 'delivery' },
      { token: admin },
    );
    expect(restock.status).toBe(200);
    const retried = await placeOrder(b.http, other, [{ productId, quantity: 1 }], key);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    // and that success is now what the key replays, sold out or not
    await untilFastPathRefuses(b, productId, crowd[43]);
    const again = await placeOrder(a.http, other, [{ productId, quantity: 1 }], key);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(retried.body.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    await assertStockInvariants(a.db.pool, [productId]);
  }, 60_000);

  it('a mark observed before a release that cleared first is never written (generation compare-and-set)', async () => {
    const productId = await insertProduct(a.db.pool, { stock: 1 });
    const marks = a.app.get(SoldOutMarks);
    const redis = a.app.get<Redis>(REDIS);
    const markKey = `${a.config.redis.keyPrefix}:stock:sold-out:${productId}`;
    // a generation exists (any clear starts one), and one read tells this process which it is
    marks.cleared([randomUUID()]);
    await redis.ping();
    await marks.knownSoldOut(crowd[0].userId, newKey(), [productId]);
    const observedAt = marks.generation();
    expect(observedAt).not.toBeNull();

    // a release commits after the observation and clears first (from the other instance) …
    b.app.get(SoldOutMarks).cleared([productId]);
    await b.app.get<Redis>(REDIS).ping(); // same connection, in order: the clear has run
    // … then the observer's "sold out" arrives, carrying the generation it read before its commit
    marks.markSoldOut([productId], observedAt);
    await redis.ping();
    expect(await redis.exists(markKey)).toBe(0);
    expect(await marks.knownSoldOut(crowd[0].userId, newKey(), [productId])).toBe(false);

    // an observation made after the clear (current generation) is written, and expires by itself
    marks.markSoldOut([productId], marks.generation());
    await redis.ping();
    expect(await redis.exists(markKey)).toBe(1);
    expect(await redis.pttl(markKey)).toBeLessThanOrEqual(5_000);
    expect(await marks.knownSoldOut(crowd[0].userId, newKey(), [productId])).toBe(true);
  }, 30_000);
});
