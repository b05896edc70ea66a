import { Client } from 'pg';
import { AdvisoryLockSession } from '../../src/database/advisory-lock-session';
import { isConnectionFailure } from '../../src/database/db-circuit-breaker';
import { KEY_LOCK_ID } from '../../src/idempotency/idempotency.repository';
import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { HoldingProxy, startHoldingProxy } from '../support/holding-proxy';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

/**
 * The key of a request running outside one transaction (the payment routes) is held as an
 * advisory lock on the process's key-lock session. When that session's connection alone is cut
 * (its backend terminated, a network path reset) while the request still runs, PostgreSQL frees
 * the lock: a twin from another process used to take the key over and run the request a second
 * time beside the first. The locks are now taken again on a new session at once.
 */
describe('a key whose lock session is cut while its request runs', () => {
  let stripe: FakeStripe;
  let proxy: HoldingProxy;
  let t: TestApp;
  let alice: Buyer;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    proxy = await startHoldingProxy(stripe.url);
    t = await bootTestApp({
      env: stripe.env(proxy.url),
    });
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.close();
    await stripe?.close();
  });

  /** The key-lock session's backend and the advisory locks it holds. */
  async function lockSession(): Promise<{ pid: number; locks: number } | undefined> {
    const { rows } = await t.db.pool.query<{ pid: number; locks: number }>(
      `SELECT a.pid, (SELECT count(*)::int FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) AS locks
         FROM pg_stat_activity a WHERE a.datname = $1 AND a.application_name LIKE 'shop-orders-key-locks/%'`,
      [t.db.name],
    );
    return rows[0];
  }

  it('takes the key again at once: a twin from elsewhere is told 409 IN_USE, not run beside it', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const key = newKey();
    const pay = () =>
      t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: key },
      );

    const gate = proxy.holdNext('POST', '/v1/payment_intents');
    const first = pay();
    await gate.reached; // the key is held; the request waits for Stripe
    const before = await lockSession();
    expect(before?.locks).toBe(1);
    await t.db.pool.query('SELECT pg_terminate_backend($1)', [before!.pid]);

    // the lock is held again, by a new session
    await waitFor('the key lock to be taken again', lockSession, {
      until: (s) => s !== undefined && s.pid !== before!.pid && s.locks === 1,
      timeoutMs: 10_000,
    });
    // a twin of another process: this process's own twins are told apart in memory, so ask the
    // database as another process would — the key's lock cannot be taken
    const { rows } = await t.db.pool.query<{ free: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${KEY_LOCK_ID}) AS free`,
      [`user:${alice.userId}`, key],
    );
    expect(rows[0].free).toBe(false);
    const twin = await pay();
    expect([twin.status, twin.body.code]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);

    gate.release();
    const answered = await first;
    expect(answered.status).toBe(201);
    const replay = await pay();
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(replay.body).toEqual(answered.body);
    // released with its request: nothing left on the session
    await waitFor('the key lock to be released', lockSession, { until: (s) => s?.locks === 0 });
  });
});

describe('AdvisoryLockSession with retakeLostHolds, its session cut', () => {
  let db: TestDatabase;
  let session: AdvisoryLockSession;
  const LOCK = 'hashtextextended($1::text, 99)';
  beforeAll(async () => {
    db = await createTestDatabase();
    session = new AdvisoryLockSession(db.url, {
      applicationName: 'lock-retake-probe',
      retakeLostHolds: true,
    });
  });
  afterAll(async () => {
    await session?.close();
    await db?.drop();
  });

  const probe = async () =>
    (
      await db.pool.query<{ pid: number; locks: number }>(
        `SELECT a.pid, (SELECT count(*)::int FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) AS locks
           FROM pg_stat_activity a WHERE a.datname = $1 AND a.application_name LIKE 'lock-retake-probe/%'`,
        [db.name],
      )
    ).rows[0];

  it('re-takes a live hold on a new session: held again', async () => {
    const hold = await session.tryHold('a', LOCK, ['a']);
    const before = await probe();
    await db.pool.query('SELECT pg_terminate_backend($1)', [before.pid]);
    await waitFor('the lock to be taken again', probe, {
      until: (s) => s !== undefined && s.pid !== before.pid && s.locks === 1,
    });
    expect(hold?.held).toBe(true);
    await hold!.release();
    expect((await probe()).locks).toBe(0);
  });

  it('a lock another holder took in the gap is lost: held false, and its release leaves theirs alone', async () => {
    const hold = await session.tryHold('b', LOCK, ['b']);
    const before = await probe();
    const other = await db.pool.connect();
    try {
      // queued for the lock before the cut session's backend has gone: granted as it ends
      await other.query('SELECT pg_terminate_backend($1)', [before.pid]);
      await other.query(`SELECT pg_advisory_lock(${LOCK})`, ['b']);
      await waitFor('the re-take to give up', async () => hold!.held, { until: (held) => !held });
      await waitFor('a new session', probe, {
        until: (s) => s !== undefined && s.pid !== before.pid,
      });
      await hold!.release();
      const { rows } = await other.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted`,
      );
      expect(rows[0].n).toBe(1);
      expect((await probe()).locks).toBe(0);
    } finally {
      await other.query(`SELECT pg_advisory_unlock_all()`);
      other.release();
    }
  });

  it('a hold released and taken again under the same name during the re-take is not locked twice', async () => {
    const first = await session.tryHold('e', LOCK, ['e']);
    const twin = await session.tryHold('f', LOCK, ['f']);
    const before = await probe();
    // the re-take reaches 'e' first; just then 'f' is released (its session is gone) and a new
    // request of this process holds 'f' again, on the new session
    let again: Awaited<ReturnType<AdvisoryLockSession['tryHold']>> | undefined;
    const internals = session as unknown as {
      run: (s: unknown, sql: string, params: unknown[]) => Promise<unknown>;
    };
    const run = internals.run.bind(session);
    let interposed = false;
    internals.run = async (s, sql, params) => {
      if (
        !interposed &&
        sql.includes('pg_try_advisory_lock') &&
        params[0] === 'e' &&
        again === undefined
      ) {
        interposed = true;
        await twin!.release();
        again = await session.tryHold('f', LOCK, ['f']);
      }
      return run(s, sql, params);
    };
    try {
      await db.pool.query('SELECT pg_terminate_backend($1)', [before.pid]);
      await waitFor('both re-taken', probe, {
        until: (p) => p !== undefined && p.pid !== before.pid && p.locks === 2 && interposed,
      });
      await waitFor(
        'the re-take to end',
        () => (session as unknown as { retaking?: unknown }).retaking === undefined,
      );
    } finally {
      internals.run = run;
    }
    expect(again?.held).toBe(true);
    await again!.release();
    await first!.release();
    // nothing left behind: 'f' is free for another process
    expect((await probe()).locks).toBe(0);
  });

  it('a hold released while its session was down is not taken again', async () => {
    const hold = await session.tryHold('c', LOCK, ['c']);
    const before = await probe();
    await db.pool.query('SELECT pg_terminate_backend($1)', [before.pid]);
    await hold!.release();
    // a later hold opens the new session if the re-take did not; either way nothing is held but it
    const next = await session.tryHold('d', LOCK, ['d']);
    await waitFor('one lock on the new session', probe, {
      until: (s) => s !== undefined && s.pid !== before.pid && s.locks === 1,
    });
    await next!.release();
    expect((await probe()).locks).toBe(0);
  });
});

describe('AdvisoryLockSession whose lock statement outlives its timeout (the server stalled)', () => {
  // The server grants the lock, but the answer comes after the client's query timeout: the
  // session is dropped, and its backend keeps the lock until it notices — after its statement.
  // The retry on a new session was told "held by another", and a first request answered 409
  // IDEMPOTENCY_KEY_IN_USE for its own key (a re-take marked its holds lost the same way).
  let db: TestDatabase;
  const LOCK = 'hashtextextended($1::text, 98)';
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db?.drop());

  const held = async (name: string) =>
    (
      await db.pool.query<{ pid: number }>(
        `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE $1 || '/%'`,
        [name],
      )
    ).rows.map((r) => r.pid);

  /** The session's first try-lock is granted, then the backend stays busy for a minute. */
  function stallFirstTryLock(session: AdvisoryLockSession): void {
    const internals = session as unknown as {
      run: (s: unknown, sql: string, params: unknown[]) => Promise<unknown>;
    };
    const run = internals.run.bind(session);
    let stalled = false;
    internals.run = (s, sql, params) => {
      if (!stalled && sql.includes('pg_try_advisory_lock')) {
        stalled = true;
        return run(s, sql.replace(' AS held', ' AS held, pg_sleep(60) AS stall'), params);
      }
      return run(s, sql, params);
    };
  }

  it('the retry ends the stalled backend first and takes the lock: a hold, not "in use"', async () => {
    const session = new AdvisoryLockSession(db.url, {
      applicationName: 'lock-stall-probe',
      queryTimeoutMs: 500,
    });
    try {
      stallFirstTryLock(session);
      const hold = await session.tryHold('k', LOCK, ['k']);
      expect(hold?.held).toBe(true);
      // held by the new session alone; the stalled backend is gone
      const pids = await held('lock-stall-probe');
      expect(pids).toHaveLength(1);
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'lock-stall-probe/%'`,
      );
      expect(rows[0].n).toBe(1);
      await hold!.release();
      expect(await held('lock-stall-probe')).toEqual([]);
    } finally {
      await session.close();
    }
  });

  it('a stalled backend that does not end in time: the hold fails as an unreachable database (503), not as "in use"', async () => {
    const session = new AdvisoryLockSession(db.url, {
      applicationName: 'lock-stall-stuck',
      queryTimeoutMs: 500,
    });
    // the server never reports the old backend gone (as if too busy to end it)
    const query = Client.prototype.query;
    const stuck = jest.spyOn(Client.prototype, 'query').mockImplementation(function (
      this: Client,
      ...args: unknown[]
    ) {
      if (typeof args[0] === 'string' && args[0].includes('UNION SELECT pid FROM pg_locks')) {
        return Promise.resolve({ rows: [{ pid: 1 }] }) as never;
      }
      return (query as (...a: unknown[]) => unknown).apply(this, args) as never;
    });
    try {
      stallFirstTryLock(session);
      const err: unknown = await session.tryHold('k', LOCK, ['k']).catch((e: unknown) => e);
      expect(String(err)).toMatch(/did not end/);
      expect(isConnectionFailure(err)).toBe(true);
    } finally {
      stuck.mockRestore();
      await session.close();
    }
  });

  it("never ends a backend that is no longer its session's (a session-mode pooler's server handed to another client)", async () => {
    const session = new AdvisoryLockSession(db.url, {
      applicationName: 'lock-stall-pooled',
      queryTimeoutMs: 500,
    });
    const other = await db.pool.connect();
    try {
      // as a pooler would leave it: the dropped session's server connection (same pid and
      // start) now another client's, whose application_name it carries
      const { rows } = await other.query<{ pid: number; started: string }>(
        `SELECT pid, backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
      );
      const internals = session as unknown as {
        doubtful: Map<number, { pid: number; started: string; name: string }>;
      };
      internals.doubtful.set(rows[0].pid, { ...rows[0], name: 'lock-stall-pooled/0badc0de' });
      const hold = await session.tryHold('p', LOCK, ['p']);
      expect(hold?.held).toBe(true);
      expect((await other.query('SELECT 1 AS alive')).rows).toEqual([{ alive: 1 }]);
      await hold!.release();
    } finally {
      other.release();
      await session.close();
    }
  });

  it('a re-take after such a drop keeps its holds (not lost to its own old backend)', async () => {
    const session = new AdvisoryLockSession(db.url, {
      applicationName: 'lock-stall-retake',
      queryTimeoutMs: 500,
      retakeLostHolds: true,
    });
    try {
      const first = await session.tryHold('a', LOCK, ['a']);
      stallFirstTryLock(session);
      // the second hold's statement stalls: the session (holding 'a') is dropped, 'a' re-taken
      const second = await session.tryHold('b', LOCK, ['b']);
      expect(second?.held).toBe(true);
      await waitFor(
        'the re-take to end',
        () => (session as unknown as { retaking?: unknown }).retaking === undefined,
      );
      expect(first?.held).toBe(true);
      const pids = await held('lock-stall-retake');
      expect(pids).toHaveLength(2);
      expect(new Set(pids).size).toBe(1);
      await first!.release();
      await second!.release();
      expect(await held('lock-stall-retake')).toEqual([]);
    } finally {
      await session.close();
    }
  });
});
