import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { HoldingProxy, startHoldingProxy } from '../support/holding-proxy';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { runScript } from '../support/processes';
import { freePort } from '../support/ports';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

/**
 * Issue 11, defect 2, the other way a request stops running: its API process is killed (SIGKILL)
 * while the request holds its key outside a transaction. The key must be free for a retry through
 * the other API process as soon as PostgreSQL has ended the dead process's sessions — not after a
 * lease.
 */
describe('an Idempotency-Key held by an API process that is killed', () => {
  let db: TestDatabase;
  let stripe: FakeStripe;
  let proxy: HoldingProxy;
  let t: TestApp;
  let alice: Buyer;
  let api: ReturnType<typeof runScript> | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    stripe = await startFakeStripe();
    proxy = await startHoldingProxy(stripe.url);
    t = await bootTestApp({
      db,
      env: stripe.env(proxy.url),
    });
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    if (api && api.proc.exitCode === null) api.proc.kill('SIGKILL');
    await api?.exited;
    await t?.close();
    await db?.drop();
    await proxy?.close();
    await stripe?.close();
  });

  async function startApi(): Promise<number> {
    const port = await freePort();
    api = runScript(
      'src/main.ts',
      {
        DATABASE_URL: db.url,
        PORT: String(port),
        HOST: '127.0.0.1',
        REDIS_KEY_PREFIX: t.config.redis.keyPrefix,
        ...stripe.env(proxy.url),
      },
      'warn',
    );
    await waitFor(
      'the second API process to be ready',
      () =>
        fetch(`http://127.0.0.1:${port}/health/ready`).then(
          (r) => r.status,
          () => 0,
        ),
      {
        until: (status) => status === 200,
        timeoutMs: 60_000,
        context: () => api?.output().slice(-3000) ?? '',
      },
    );
    return port;
  }

  /**
   * A payment start sent to the second API process (with a new order and key), held at Stripe:
   * the process holds the key until the gate is released. Its status, 0 if it never answers.
   */
  async function heldPaymentStart() {
    const port = await startApi();
    const productId = await insertProduct(db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const key = newKey();
    const path = `/v1/orders/${order.body.id}/payment`;
    const gate = proxy.holdNext('POST', '/v1/payment_intents');
    const answered = fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${alice.token}`,
        'idempotency-key': key,
        'content-type': 'application/json',
      },
      body: '{}',
    }).then(
      (r) => r.status,
      () => 0,
    );
    return { order, key, path, gate, answered };
  }

  it('a retry through the other API process runs at once once the killed process is gone', async () => {
    const { order, key, path, gate, answered: doomed } = await heldPaymentStart();
    await gate.reached; // the killed process's request holds the key, waiting for Stripe
    const busy = await t.http.post(path, {}, { token: alice.token, idempotencyKey: key });
    expect([busy.status, busy.body.code]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);

    // the key-lock sessions now open: the doomed process's and this test app's own
    const keyLockSessions = async () =>
      (
        await db.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'shop-orders-key-locks/%'`,
          [db.name],
        )
      ).rows.map((r) => r.pid);
    const before = await keyLockSessions();
    expect(before.length).toBeGreaterThanOrEqual(1);

    api!.proc.kill('SIGKILL');
    await api!.exited;
    expect(await doomed).toBe(0); // its client never got an answer
    gate.release();
    // PostgreSQL ends the dead process's session as soon as it sees its socket close
    await waitFor(
      "the dead process's key-lock session to end",
      async () => {
        const now = await keyLockSessions();
        return before.filter((pid) => now.includes(pid)).length;
      },
      { until: (alive) => alive < before.length, timeoutMs: 20_000, intervalMs: 50 },
    );

    const retry = await t.http.post(path, {}, { token: alice.token, idempotencyKey: key });
    expect([retry.status, retry.body.code]).toEqual([201, undefined]);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const intents = stripe.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/payment_intents',
    );
    expect(new Set(intents.map((r) => r.idempotencyKey))).toEqual(
      new Set([`order:${order.body.id}:payment-intent`]),
    );
  }, 90_000);

  it('a process frozen while it holds the key (SIGSTOP) loses it after the idle limit: the retry runs; one intent', async () => {
    const { order, key, path, gate, answered: frozen } = await heldPaymentStart();
    await gate.reached;
    expect((await t.http.post(path, {}, { token: alice.token, idempotencyKey: key })).status).toBe(
      409,
    );
    api!.proc.kill('SIGSTOP');
    const frozenAt = performance.now();
    try {
      // its key-lock session sends nothing now: the server ends it after the idle limit (10 s)
      const retry = await waitFor(
        'the key to be free for the retry',
        () => t.http.post(path, {}, { token: alice.token, idempotencyKey: key }),
        { until: (r) => r.status !== 409, timeoutMs: 30_000, intervalMs: 500 },
      );
      expect([retry.status, retry.body.code]).toEqual([201, undefined]);
      expect(performance.now() - frozenAt).toBeLessThan(25_000);
    } finally {
      api!.proc.kill('SIGCONT');
    }
    // running again, the frozen request finishes at the provider with the same intent; the retry's answer stands
    gate.release();
    await frozen;
    const replay = await t.http.post(path, {}, { token: alice.token, idempotencyKey: key });
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    const payments = await db.pool.query(
      `SELECT count(*)::int AS n FROM payments WHERE order_id = $1`,
      [order.body.id],
    );
    expect(payments.rows[0].n).toBe(1);
    const intents = stripe.requests.filter(
      (r) =>
        r.method === 'POST' &&
        r.path === '/v1/payment_intents' &&
        r.idempotencyKey === `order:${order.body.id}:payment-intent`,
    );
    expect(intents.length).toBeGreaterThanOrEqual(1);
    api!.proc.kill('SIGKILL');
    await api!.exited;
  }, 90_000);
});
