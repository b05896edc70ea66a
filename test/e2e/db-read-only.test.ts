import { insertProduct, newKey } from '../support/fixtures';
import { expectProblem } from '../support/http';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * PostgreSQL that takes no writes (the pool's address left on a standby after a failover, or a
 * server set read-only — some providers do on a full disk): every transaction fails with 25006.
 * It answered 500 INTERNAL_ERROR, readiness stayed 200 (`SELECT 1` works on a standby), and the
 * pool kept its read-only connections, so the instance kept failing after the database took
 * writes again. Now: 503 with Retry-After, readiness 503, and a connection that hit it is dropped.
 */
describe('a database that takes no writes', () => {
  let t: TestApp;
  let alice: Buyer;

  beforeAll(async () => {
    t = await bootTestApp();
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await t.db.pool
      .query(`ALTER DATABASE "${t.db.name}" RESET default_transaction_read_only`)
      .catch(() => undefined);
    await t?.close();
  });

  /** New sessions of the app's database start read-only (or not); the app's open ones are ended. */
  async function readOnly(on: boolean): Promise<void> {
    await t.db.pool.query(
      `ALTER DATABASE "${t.db.name}" SET default_transaction_read_only = ${on ? 'on' : 'off'}`,
    );
    if (on) {
      await t.db.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'shop-orders'`,
        [t.db.name],
      );
    }
  }

  it('answers 503 with Retry-After (not 500), is not ready, and works again once writes are back', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    await readOnly(true);
    // (the first statements on connections the server ended are connection failures: 503 too)
    const refused = await waitFor(
      'a checkout on a read-only connection',
      () => placeOrder(t.http, alice, [{ productId, quantity: 1 }], newKey()),
      {
        until: (r) =>
          r.status !== 503 ||
          r.body.detail === 'The database accepts no writes right now; retry it.',
        intervalMs: 100,
      },
    );
    expectProblem(refused, 503, 'SERVICE_UNAVAILABLE');
    expect(refused.headers.get('retry-after')).toBe('1');
    const ready = await t.http.get('/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.details.database.status).toBe('down');
    // a few more, every one a 503: never a 500
    for (let i = 0; i < 5; i++)
      expect((await placeOrder(t.http, alice, [{ productId, quantity: 1 }], newKey())).status).toBe(
        503,
      );

    // out of rotation, only readiness probes come (no write to find out writes are back): each
    // probe's connection that saw read-only is dropped too, so one opened afresh sees them back
    for (let i = 0; i < 3; i++) expect((await t.http.get('/health/ready')).status).toBe(503);
    await readOnly(false);
    await waitFor(
      'readiness once writes are back',
      () => t.http.get('/health/ready').then((r) => r.status),
      {
        until: (status) => status === 200,
        timeoutMs: 10_000,
        intervalMs: 250,
      },
    );
    const placed = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], newKey());
    expect(placed.status).toBe(201);
  });
});
