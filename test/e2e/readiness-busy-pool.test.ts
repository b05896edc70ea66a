import { QueryFailedError } from 'typeorm';
import { DbCircuitBreaker } from '../../src/database/db-circuit-breaker';
import { TransactionHost } from '../../src/database/transaction-host';
import { registerCustomer } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * During a sale the pool's queue can be seconds long while PostgreSQL answers all the time.
 * Readiness used to queue its `SELECT 1` behind it and time out after 1.5 s — on every API process
 * at once (they share the database and the spike), so the load balancer pulled them all and a
 * spike became an outage. A statement answered in the last 2 s (breaker closed) now counts as
 * "PostgreSQL answers"; only an idle process probes.
 */
describe('readiness while the pool is busy but the database answers', () => {
  let t: TestApp;
  /** Waits until this database has no session named `applicationName` (a side connection let go). */
  const sideConnectionClosed = (applicationName: string) =>
    waitFor(
      `the side connection ${applicationName} closed`,
      async () =>
        Number(
          (
            await t.db.pool.query(
              `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
              [applicationName],
            )
          ).rows[0].count,
        ),
      { until: (n) => n === 0 },
    );
  beforeAll(async () => {
    t = await bootTestApp({ env: { DATABASE_POOL_SIZE: '2' } });
  });
  /**
   * Advisory lock `id` held by a connection of the test's own (in a transaction), and `count`
   * statements of the app waiting on it; `release()` lets it go and waits for them.
   */
  async function heldWithWaiters(id: number, count: number) {
    const tx = t.app.get(TransactionHost);
    const holder = await t.db.pool.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT pg_advisory_xact_lock(${id})`);
    const waiting = Promise.all(
      Array.from({ length: count }, () =>
        tx.query(`SELECT pg_advisory_xact_lock_shared(${id})`).catch(() => undefined),
      ),
    );
    return {
      release: async () => {
        await holder.query('COMMIT');
        holder.release();
        await waiting;
      },
    };
  }

  /** Until `count` statements wait on advisory lock `id`. */
  const waitingOnLock = (id: number, count: number) =>
    waitFor(
      `${count} statements waiting on lock ${id}`,
      async () =>
        Number(
          (
            await t.db.pool.query(
              `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`,
              [id],
            )
          ).rows[0].count,
        ),
      { until: (n) => n >= count },
    );
  afterAll(async () => {
    await t?.close();
  });

  it('stays 200 when the pooled connection its probe takes was just ended by the server (a blink: its FATAL not read yet) — the probe is tried once more, on another; down when that fails too', async () => {
    const tx = t.app.get(TransactionHost);
    const own = tx as unknown as { onOwnConnection: (work: unknown) => Promise<unknown> };
    // (as TypeORM reports a statement whose connection the server ended)
    const dropped = () =>
      Promise.reject(
        new QueryFailedError('SELECT', [], new Error('Connection terminated unexpectedly')),
      );
    const probes = jest.spyOn(own, 'onOwnConnection').mockImplementationOnce(dropped);
    try {
      expect((await t.http.get('/health/ready')).status).toBe(200);
      expect(probes).toHaveBeenCalledTimes(2);
      // the database really gone (both tries fail): down, as before
      probes.mockClear();
      probes.mockImplementationOnce(dropped).mockImplementationOnce(dropped);
      const down = await t.http.get('/health/ready');
      expect(down.status).toBe(503);
      expect(probes).toHaveBeenCalledTimes(2);
      expect(t.app.get(DbCircuitBreaker).state).toBe('closed');
    } finally {
      probes.mockRestore();
    }
    expect((await t.http.get('/health/ready')).status).toBe(200);
  });

  it('stays 200 with a queue of ~2.5 s in front of the pool', async () => {
    expect((await t.http.get('/health/ready')).status).toBe(200);
    const tx = t.app.get(TransactionHost);
    // 100 statements of 50 ms on 2 connections: answers every 50 ms, a queue of ~2.5 s
    let answered = 0;
    const busy = Promise.all(
      Array.from({ length: 100 }, () => tx.query('SELECT pg_sleep(0.05)').then(() => answered++)),
    );
    try {
      await waitFor('the first answers from the busy pool', () => answered, {
        until: (n) => n >= 4,
        intervalMs: 10,
      });
      const ready = await t.http.get('/health/ready');
      expect([ready.status, ready.body.details?.database]).toEqual([
        200,
        { status: 'up', breaker: 'closed' },
      ]);
    } finally {
      await busy;
    }
  }, 30_000);

  it('stays 200 while every connection waits on a lock (no answer for seconds): probed over a connection of its own', async () => {
    // every pool connection a checkout waiting on a hot row whose holder froze (up to the
    // server's 15 s idle-in-transaction limit), more callers queued: no statement is answered,
    // and the probe queued behind them timed out — on every API process at once
    const tx = t.app.get(TransactionHost);
    const breaker = t.app.get(DbCircuitBreaker);
    const held = await heldWithWaiters(4242, 3);
    try {
      await waitFor('callers queued for the pool', () => tx.poolWaiting(), {
        until: (n) => n > 0,
        intervalMs: 10,
      });
      await waitFor('no statement answered for 2 s', () => breaker.answeredWithin(2000), {
        until: (a) => !a,
      });
      const ready = await t.http.get('/health/ready');
      expect([ready.status, ready.body.details?.database]).toEqual([
        200,
        { status: 'up', breaker: 'closed' },
      ]);
    } finally {
      await held.release();
    }
    // and the connection is let go once the pool has no queue again
    expect((await t.http.get('/health/ready')).status).toBe(200);
    await sideConnectionClosed('shop-orders/readiness');
  }, 30_000);

  it('stays 200 while every connection waits on a lock and nobody else is queued yet: probed over a connection of its own', async () => {
    // the pool at its size, each connection a checkout waiting on a hot row, no caller queued: the
    // probe took its place in the queue and timed out after 1.5 s (dbpressure review)
    const tx = t.app.get(TransactionHost);
    const held = await heldWithWaiters(4245, 2);
    try {
      await waitingOnLock(4245, 2);
      expect([tx.poolExhausted(), tx.poolWaiting()]).toEqual([true, 0]);
      const ready = await t.http.get('/health/ready');
      expect([ready.status, ready.body.details?.database]).toEqual([
        200,
        { status: 'up', breaker: 'closed' },
      ]);
    } finally {
      await held.release();
    }
    expect(tx.poolExhausted()).toBe(false);
  }, 30_000);

  it('stays 200, its breaker closed, when waits in the pool queue run out behind such a lock (each a 503 of its own)', async () => {
    // the lock held past DATABASE_POOL_WAIT_MS: queued callers give up one after another; counted
    // as outages, they opened the breaker, readiness skipped its side probe, and every instance
    // behind the same frozen holder answered 503 — the database answers a connection of its own
    const short = await bootTestApp({
      db: t.db,
      env: { DATABASE_POOL_SIZE: '2', DATABASE_POOL_WAIT_MS: '500', DB_BREAKER_FAILURES: '2' },
    });
    const holder = await t.db.pool.connect();
    try {
      const tx = short.app.get(TransactionHost);
      const breaker = short.app.get(DbCircuitBreaker);
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock(4243)`);
      const stuck = [1, 2].map(() =>
        tx.query('SELECT pg_advisory_xact_lock_shared(4243)').catch(() => undefined),
      );
      await waitingOnLock(4243, 2);
      let gaveUp = 0;
      for (let wave = 0; wave < 4; wave++) {
        await Promise.all(
          Array.from({ length: 3 }, () =>
            tx.query('SELECT 1').catch((e: { code?: string }) => {
              if (e.code === 'SERVICE_UNAVAILABLE') gaveUp++;
            }),
          ),
        );
      }
      expect(gaveUp).toBe(12);
      expect(breaker.state).toBe('closed');
      // the sale goes on: callers still queued when the balancer asks
      const more = Array.from({ length: 3 }, () => tx.query('SELECT 1').catch(() => undefined));
      await waitFor('callers queued for the pool', () => tx.poolWaiting(), {
        until: (n) => n > 0,
        intervalMs: 10,
      });
      const ready = await short.http.get('/health/ready');
      expect([ready.status, ready.body.details?.database]).toEqual([
        200,
        { status: 'up', breaker: 'closed' },
      ]);
      await Promise.all(more);
      expect(breaker.state).toBe('closed');
      await holder.query('COMMIT');
      await Promise.all(stuck);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      await short.close();
    }
    // the breaker's side connection is let go with its app
    await sideConnectionClosed('shop-orders/breaker');
  }, 30_000);

  it('serves a request that waited longer than the connect timeout for a free connection', async () => {
    // Every connection busy for 6.5 s (a sale's lock queue, say) while the database answers: the
    // pool's queue wait was its connect timeout (5 s), and the request behind them answered 503
    // "The database is unavailable" — a full run saw two in a 150-buyer checkout burst
    const { accessToken: token } = await registerCustomer(t.http);
    const tx = t.app.get(TransactionHost);
    const busy = Promise.all([tx.query('SELECT pg_sleep(6.5)'), tx.query('SELECT pg_sleep(6.5)')]);
    try {
      const startedAt = Date.now();
      const r = await t.http.get('/v1/orders', { token });
      expect([r.status, r.body?.detail]).toEqual([200, undefined]);
      expect(Date.now() - startedAt).toBeGreaterThan(5_000);
    } finally {
      await busy;
    }
  }, 30_000);
});
