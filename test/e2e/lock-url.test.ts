import { spawn } from 'node:child_process';
import { Server, Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { AddressInfo } from 'node:net';
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
  let atBoot: number;

  beforeAll(async () => {
    const db = await createTestDatabase();
    proxy = await startPgCommitProxy(db.url);
    t = await bootTestApp({ db, env: { DATABASE_LOCK_URL: proxy.through(db.url) } });
    [alice] = await buyers(t.http, 1);
    // the boot's one check that the lock URL reaches this database (SchemaCheck), closed since
    atBoot = proxy.connections;
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
    expect(atBoot).toBe(1);
    expect(proxy.connections).toBe(atBoot); // checkout and sign-up ran on the pools, direct
    const key = newKey();
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect(pay.status).toBe(201);
    expect(proxy.connections).toBe(atBoot + 1); // the key-lock session, through the lock URL
    const replay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    const { rows } = await t.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'shop-orders-key-locks/%'`,
      [t.db.name],
    );
    expect(rows[0].n).toBe(1);
    expect(proxy.connections).toBe(atBoot + 1); // one session for the process, kept
  });

  it('carries the migration CLI (its run lock is a session advisory lock): DATABASE_URL is not used by it', async () => {
    // DATABASE_URL at a port nothing listens on: a transaction-mode bouncer, as far as the CLI knows
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const pooled = new URL(t.db.url);
    pooled.host = `127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const before = proxy.connections;
    const run = spawn(
      process.execPath,
      [
        '-r',
        './scripts/ts-register.js',
        'node_modules/typeorm/cli.js',
        'migration:run',
        '-d',
        'ormconfig.ts',
      ],
      {
        cwd: join(__dirname, '..', '..'),
        env: {
          ...process.env,
          DATABASE_URL: pooled.toString(),
          DATABASE_LOCK_URL: proxy.through(t.db.url),
          LOG_LEVEL: 'error',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    run.stdout.on('data', (d: Buffer) => (out += d.toString()));
    run.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => run.on('exit', resolve));
    expect({ code, out }).toEqual({
      code: 0,
      out: expect.stringContaining('No migrations are pending'),
    });
    expect(proxy.connections).toBeGreaterThan(before);
  }, 60_000);
});

/**
 * A lock URL whose server accepts the connection and never answers (a partition, a failover that
 * moved the address, a stalled server): the lock session's connect gives up after its 5 s
 * timeout with node-postgres's own "timeout expired", which carries no error code. That is the
 * database being unreachable — 503 with Retry-After, like every route in an outage — not a 500.
 */
describe('DATABASE_LOCK_URL that never answers', () => {
  let t: TestApp;
  let silent: Server;
  const sockets = new Set<Socket>();
  let alice: Buyer;

  beforeAll(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const db = await createTestDatabase();
    const lockUrl = new URL(db.url);
    lockUrl.host = `127.0.0.1:${port}`;
    t = await bootTestApp({ db, env: { DATABASE_LOCK_URL: lockUrl.toString() } });
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    sockets.forEach((s) => s.destroy());
    await new Promise((resolve) => silent?.close(resolve));
  });

  it('a keyed payment start answers 503 SERVICE_UNAVAILABLE with Retry-After; nothing is left in use', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    const key = newKey();
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([pay.status, pay.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    expect(Number(pay.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(pay.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const { rows } = await t.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1`,
      [key],
    );
    expect(rows[0].n).toBe(0);
    const { rows: orders } = await t.db.pool.query<{ status: string }>(
      `SELECT status FROM orders WHERE id = $1`,
      [order.body.id],
    );
    expect(orders[0].status).toBe('INVENTORY_RESERVED');
    // the next keyed request fails fast (the endpoint was unreachable a moment ago), not after
    // another 5 s connect timeout of its own
    const started = Date.now();
    const again = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect([again.status, again.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    expect(Date.now() - started).toBeLessThan(2_000);
  }, 30_000);

  it('its failures are its own: more keyed payments failing than the breaker counts never take the database routes down', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 20 });
    const orders = [];
    for (let i = 0; i < t.config.database.breaker.failures + 2; i++) {
      orders.push(await placeOrder(t.http, alice, [{ productId, quantity: 1 }]));
    }
    const paid = await Promise.all(
      orders.map((o) =>
        t.http.post(
          `/v1/orders/${o.body.id}/payment`,
          {},
          { token: alice.token, idempotencyKey: newKey() },
        ),
      ),
    );
    expect(paid.map((r) => r.status)).toEqual(orders.map(() => 503));
    // the database itself answers: its routes and readiness stay up
    expect((await t.http.get('/v1/orders', { token: alice.token })).status).toBe(200);
    const ready = await t.http.get('/health/ready');
    expect([ready.status, ready.body.details?.database]).toEqual([
      200,
      { status: 'up', breaker: 'closed' },
    ]);
  }, 60_000);
});
