import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PgCommitProxy, startPgCommitProxy } from '../support/pg-commit-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';

/**
 * DATABASE_LOCK_URL: the dedicated lock sessions (session advisory locks, which a
 * transaction-mode PgBouncer cannot carry) connect there, the pools to DATABASE_URL. Here the
 * lock URL goes through a TCP proxy that counts its connections, and the pools go direct.
 */
describe('DATABASE_LOCK_URL', () => {
  let t: TestApp;
  let proxy: PgCommitProxy;
  let alice: Buyer;

  beforeAll(async () => {
    const db = await createTestDatabase();
    proxy = await startPgCommitProxy(db.url);
    t = await bootTestApp({ db, env: { DATABASE_LOCK_URL: proxy.through(db.url) } });
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    await proxy?.close();
  });

  it('carries the key-lock session of a payment (a request held outside one transaction); the pools never use it', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    expect(proxy.connections).toBe(0); // checkout and sign-up ran on the pools, direct
    const key = newKey();
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect(pay.status).toBe(201);
    expect(proxy.connections).toBe(1); // the key-lock session, through the lock URL
    const replay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    const { rows } = await t.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'shop-orders-key-locks'`,
      [t.db.name],
    );
    expect(rows[0].n).toBe(1);
    expect(proxy.connections).toBe(1); // one session for the process, kept
  });
});
