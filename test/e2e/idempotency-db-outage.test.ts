import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { HoldingProxy, startHoldingProxy } from '../support/holding-proxy';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { TestApp, bootTestApp } from '../support/test-app';
import type { TestDatabase } from '../support/test-database';

/**
 * Issue 11, defect 2: a POST /v1/orders/{id}/payment claimed its key as PostgreSQL went away, failed
 * with a 5xx, and its clean-up failed too (same outage); the retry was refused 409
 * IDEMPOTENCY_KEY_IN_USE for the whole 120 s lease though nothing was running. API.md: a key is
 * never left "in use" by a request that is no longer running. On a private PostgreSQL: the request
 * is held inside its provider call, the database crashes (`pg_ctl stop -m immediate`), the request
 * fails, the database comes back.
 */
describe('an Idempotency-Key after a request that a database outage ended', () => {
  let pg: PrivatePostgres;
  let db: TestDatabase;
  let stripe: FakeStripe;
  let proxy: HoldingProxy;
  let t: TestApp;
  let alice: Buyer;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    db = await pg.migratedDatabase();
    stripe = await startFakeStripe();
    proxy = await startHoldingProxy(stripe.url);
    t = await bootTestApp({
      db,
      env: stripe.env(proxy.url),
    });
    [alice] = await buyers(t.http, 1);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    await proxy?.close();
    await stripe?.close();
    await pg?.destroy();
  });

  /** Starts the payment, and crashes the database while the request waits for the provider. */
  async function paymentCutByOutage(orderId: string, key: string) {
    const gate = proxy.holdNext('POST', '/v1/payment_intents');
    const pending = t.http.post(
      `/v1/orders/${orderId}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    await gate.reached; // the key is claimed; the handler waits for Stripe
    await pg.stop('immediate');
    gate.release();
    const failed = await pending;
    await pg.start();
    return failed;
  }

  it('the payment request failed with the outage: after recovery its retry runs afresh, not 409', async () => {
    const productId = await insertProduct(db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const key = newKey();

    const failed = await paymentCutByOutage(order.body.id, key);
    expect(failed.status).toBeGreaterThanOrEqual(500);

    const retry = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([retry.status, retry.body.code]).toEqual([201, undefined]);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const creates = stripe.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/payment_intents',
    );
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(
      new Set([`order:${order.body.id}:payment-intent`]),
    );
    expect(stripe.intent(retry.body.paymentIntentId)).toBeDefined();
    const replay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(replay.body).toEqual(retry.body);
  }, 60_000);

  it('while the database is down, a keyed payment start answers 503 with Retry-After, like every other route', async () => {
    const productId = await insertProduct(db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    await pg.stop('immediate');
    try {
      for (let i = 0; i < 3; i++) {
        const res = await t.http.post(
          `/v1/orders/${order.body.id}/payment`,
          {},
          { token: alice.token, idempotencyKey: newKey() },
        );
        expect([res.status, res.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      }
    } finally {
      await pg.start();
    }
  }, 60_000);

  it('the key of that failed request is free on a transactional route too', async () => {
    const productId = await insertProduct(db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const key = newKey();

    const failed = await paymentCutByOutage(order.body.id, key);
    expect(failed.status).toBeGreaterThanOrEqual(500);

    const other = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect([other.status, other.body.code]).toEqual([201, undefined]);
    const left = await db.pool.query(`SELECT state FROM idempotency_keys WHERE key = $1`, [key]);
    expect(left.rows).toEqual([{ state: 'completed' }]);
  }, 60_000);
});
