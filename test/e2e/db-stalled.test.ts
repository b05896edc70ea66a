import { Client } from 'pg';
import { DbCircuitBreaker } from '../../src/database/db-circuit-breaker';
import { TransactionHost } from '../../src/database/transaction-host';
import { registerCustomer } from '../support/auth';
import type { HttpResponse } from '../support/http';
import { PrivatePostgres } from '../support/private-postgres';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

const SILENCE_MS = 1_500;

async function timed(
  request: () => Promise<HttpResponse>,
): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await request();
  return { status: res.status, ms: performance.now() - started };
}

/**
 * A PostgreSQL that keeps its connections and answers nothing (SIGSTOP: a stalled disk or host;
 * the kernel still acknowledges what is sent, so TCP notices nothing for ~15 minutes). Statements
 * sent to it used to wait that long, each holding its pool connection; now each fails after
 * DATABASE_QUERY_TIMEOUT_MS of silence with its connection dropped, and once the server answers
 * again the pool serves a full load — no connection is left waiting on the stalled server.
 */
describe('a stalled PostgreSQL (frozen, connections kept open)', () => {
  let pg: PrivatePostgres;
  let t: TestApp;
  let token: string;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    t = await bootTestApp({
      db: await pg.migratedDatabase(),
      env: {
        DATABASE_QUERY_TIMEOUT_MS: String(SILENCE_MS),
        DATABASE_POOL_SIZE: '4',
        DB_BREAKER_FAILURES: '100', // this test is about the statements, not the breaker
      },
    });
    token = (await registerCustomer(t.http)).accessToken;
  });
  afterAll(async () => {
    pg?.thaw();
    await t?.close();
    await t?.db.drop();
    await pg?.destroy();
  });

  it('answers 503 after the silence limit instead of hanging, and the pool is whole once the server answers again', async () => {
    expect((await t.http.get('/v1/orders', { token })).status).toBe(200);
    pg.freeze();
    let thawed = false;
    try {
      // more requests than the pool has connections: each statement sent fails after the limit
      // (the old client: every one waits until the server answers again)
      const stalled = await Promise.all(
        Array.from({ length: 6 }, () => timed(() => t.http.get('/v1/orders', { token }))),
      );
      for (const r of stalled) {
        expect(r.status).toBe(503);
        // the statements sent fail after one or two silences; a request that waited for their
        // connections then opens one to the frozen server, which gives up after its 5 s connect
        // timeout (a queue wait of its own, DATABASE_POOL_WAIT_MS, no longer ends it sooner)
        expect(r.ms).toBeLessThan(3 * SILENCE_MS + 5_000 + 5_000);
      }
      pg.thaw();
      thawed = true;
    } finally {
      if (!thawed) pg.thaw();
    }
    // no connection is still waiting on an answer from the stall: a full load is served at once
    await waitFor(
      'the API to read again',
      async () => (await t.http.get('/v1/orders', { token })).status,
      { until: (s) => s === 200 },
    );
    const after = await Promise.all(
      Array.from({ length: 12 }, () => t.http.get('/v1/orders', { token })),
    );
    expect(after.map((r) => r.status)).toEqual(Array(12).fill(200));
  }, 60_000);

  it("opens the breaker on waits in the pool's queue that run out while a connection of its own gets no answer either, long before the statements' own limit", async () => {
    // Under load in an outage without resets nearly every caller's failure is the pool queue's:
    // the statements out wait DATABASE_QUERY_TIMEOUT_MS (here 60 s). Such a wait counts once a
    // SELECT 1 over a connection of its own is not answered either (a frozen lock holder's queue
    // is no outage: readiness-busy-pool.test.ts), so the breaker opens within seconds and the
    // requests after it are 503 at once instead of each waiting for the pool.
    const app = await bootTestApp({
      db: t.db,
      env: {
        DATABASE_QUERY_TIMEOUT_MS: '60000',
        DATABASE_POOL_SIZE: '2',
        // (a request that waited in the pool's queue takes this long at least: the open breaker's
        // answer is told from it by time with room for a loaded machine — 376 ms seen in a full run)
        DATABASE_POOL_WAIT_MS: '1500',
        DB_BREAKER_FAILURES: '3',
        // (its first half-open wait is 1 s whatever this says: the request right after it opens is
        // answered at once, well within it)
        DB_BREAKER_HALF_OPEN_MS: '3000',
      },
    });
    const breaker = app.app.get(DbCircuitBreaker);
    const tx = app.app.get(TransactionHost);
    expect((await app.http.get('/v1/orders', { token })).status).toBe(200);
    pg.freeze();
    let thawed = false;
    const pending: Promise<unknown>[] = [];
    try {
      const frozenAt = performance.now();
      // a steady load: a few requests every 150 ms until the breaker opens
      await waitFor(
        'the breaker to open',
        () => {
          for (let i = 0; i < 3; i++) pending.push(tx.query('SELECT 1').catch(() => undefined));
          return breaker.state;
        },
        { until: (state) => state === 'open', intervalMs: 150, timeoutMs: 20_000 },
      );
      expect(performance.now() - frozenAt).toBeLessThan(15_000);
      // refused at once while open; a request that came after its first half-open wait (1 s: a
      // stalled jest worker sees the opening late) is its trial, sent to the frozen server and
      // given up after the probe's limit, which opens it again for longer — the next is refused
      let fast = await timed(() => app.http.get('/v1/orders', { token }));
      for (let tries = 1; fast.ms >= 1000 && tries < 3; tries++)
        fast = await timed(() => app.http.get('/v1/orders', { token }));
      expect(fast.status).toBe(503);
      expect(fast.ms).toBeLessThan(1000);
      pg.thaw();
      thawed = true;
      await Promise.all(pending);
      await waitFor(
        'the API to read again',
        async () => (await app.http.get('/v1/orders', { token })).status,
        {
          until: (s) => s === 200,
        },
      );
    } finally {
      if (!thawed) pg.thaw();
      await Promise.all(pending);
      await app.close();
    }
  }, 60_000);

  /**
   * `change` done to the database `shop` by a superuser (its backends terminated first), the
   * service's answers to `paths` checked while it holds, `undo` done, then the API reads again.
   */
  const whileDatabase = async (change: string, undo: string, paths: string[]) => {
    const admin = new Client({ connectionString: pg.url('postgres') });
    await admin.connect();
    try {
      if (change.includes('RENAME'))
        await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop'`,
        );
      await admin.query(change);
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop'`,
      );
      for (const path of paths) {
        const res = await t.http.get(path, { token });
        expect([path, res.status, res.body.code]).toEqual([path, 503, 'SERVICE_UNAVAILABLE']);
        expect(res.headers.get('retry-after')).toBeTruthy();
      }
    } finally {
      await admin.query(undo).catch(() => undefined);
      await admin.end();
    }
    await waitFor(
      'the API to read again',
      async () => (await t.http.get('/v1/orders', { token })).status,
      { until: (s) => s === 200 },
    );
  };

  it('a database the server no longer has under that name (3D000) answers 503, not 500, and serves again once it is back', async () => {
    await whileDatabase(
      `ALTER DATABASE shop RENAME TO shop_elsewhere`,
      `ALTER DATABASE shop_elsewhere RENAME TO shop`,
      ['/v1/orders'],
    );
  }, 60_000);

  it('a database not accepting connections (55000: ALLOW_CONNECTIONS false, a maintenance window) answers 503, not 500, and serves again once it does', async () => {
    await whileDatabase(
      `ALTER DATABASE shop ALLOW_CONNECTIONS false`,
      `ALTER DATABASE shop ALLOW_CONNECTIONS true`,
      ['/v1/orders', `/v1/products/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`],
    );
  }, 60_000);
});
