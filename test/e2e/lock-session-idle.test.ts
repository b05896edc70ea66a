import { AdvisoryLockSession } from '../../src/database/advisory-lock-session';
import { runScript } from '../support/processes';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

// (the heartbeat is a third of it: 2 s, inside the limit even on a loaded machine — at 3 s, a stall
// of this process of 2 s, which runs one of the sessions, ended it)
const IDLE_MS = 6_000;

/** The backend holding the test's lock (4244, hashtext('pass')), with the server's clock (ms). */
interface LockHolder {
  pid: number;
  backendStart: string;
  /** When its last statement (a heartbeat) changed its state. */
  stateChange: string;
  /** clock_timestamp() as the row was read. */
  at: number;
  stateChangeAt: number;
}

/**
 * A lock session with an idle limit (the scheduled passes' locks): a holder frozen mid-pass
 * (SIGSTOP, a paused container) keeps its TCP connection — its kernel still answers the server's
 * keepalives — so its locks used to stay taken for as long as it stayed frozen, and every other
 * worker skipped the pass. The server now ends a session that sent nothing for the limit; a live
 * holder's heartbeat keeps it.
 */
describe('a lock session with an idle limit', () => {
  let db: TestDatabase;
  let other: AdvisoryLockSession;
  const hold = () => other.tryHold('pass', `4244, hashtext($1::text)`, ['pass']);
  /** The backends holding the lock now (a two-int advisory key: classid 4244, objsubid 2). */
  const holders = async (): Promise<LockHolder[]> =>
    (
      await db.pool.query<LockHolder>(
        `SELECT l.pid, a.backend_start::text AS "backendStart", a.state_change::text AS "stateChange",
                (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at,
                (extract(epoch FROM a.state_change) * 1000)::float8 AS "stateChangeAt"
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 4244 AND l.objsubid = 2
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    other = new AdvisoryLockSession(db.url, {
      applicationName: 'test-idle-locks',
      idleSessionTimeoutMs: IDLE_MS,
    });
  });
  afterAll(async () => {
    await other?.close();
    await db?.drop();
  });

  it('a live holder keeps its lock past the limit (its heartbeat); a frozen one loses it to another process, and knows once it runs again', async () => {
    const holder = runScript('test/support/hold-lock-process.ts', {
      LOCK_URL: db.url,
      IDLE_MS: String(IDLE_MS),
    });
    try {
      await waitFor('the holder to hold the lock', () => holder.output(), {
        until: (o) => o.includes('held\n'),
        timeoutMs: 30_000,
      });
      expect(holder.output()).not.toContain('not held');
      const found = await holders();
      expect(found).toHaveLength(1);
      const [first] = found;
      // alive for twice the limit: the very session that took the lock (same backend, never
      // ended and re-taken — the holder would re-take a lost lock at once) still holds it, its
      // heartbeats seen by the server (its last statement within the limit). Polled, and any
      // other holder or none fails at once.
      const heartbeats = new Set<string>();
      const last = await waitFor(
        'the holder to keep its lock for twice the idle limit',
        async () => {
          const now = await holders();
          if (
            now.length !== 1 ||
            now[0].pid !== first.pid ||
            now[0].backendStart !== first.backendStart
          )
            throw new Error(`the lock's holder changed: ${JSON.stringify({ first, now })}`);
          if (now[0].stateChangeAt > first.at) heartbeats.add(now[0].stateChange);
          return now[0];
        },
        { until: (h) => h.at - first.at >= IDLE_MS * 2, intervalMs: 100 },
      );
      expect(heartbeats.size).toBeGreaterThanOrEqual(2);
      expect(last.at - last.stateChangeAt).toBeLessThan(IDLE_MS);
      // … another process cannot take it, and the holder itself still reports it held
      expect(await hold()).toBeNull();
      expect(holder.output()).toContain('still held\n');
      // (and never lost meanwhile: any 'lost' it prints from here on is news)
      expect(holder.output()).not.toContain('lost');

      holder.proc.kill('SIGSTOP');
      const frozenAt = performance.now();
      const taken = await waitFor('the other process to take the lock', () => hold(), {
        until: (h) => h !== null,
        intervalMs: 100,
        timeoutMs: IDLE_MS * 4,
      });
      expect(taken?.held).toBe(true);
      expect(performance.now() - frozenAt).toBeLessThan(IDLE_MS * 3);
      // the server ended the frozen holder's session (its idle limit): its backend is gone
      await waitFor(
        "the frozen holder's backend to end",
        async () =>
          (
            await db.pool.query(
              `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2::timestamptz`,
              [first.pid, first.backendStart],
            )
          ).rowCount === 0,
      );

      // running again, the first holder finds its session ended and the lock another's
      holder.proc.kill('SIGCONT');
      await waitFor('the first holder to see it lost', () => holder.output(), {
        until: (o) => o.includes('lost\n'),
      });
      expect(taken?.held).toBe(true);
      await taken?.release();
    } finally {
      holder.proc.kill('SIGCONT');
      holder.proc.kill('SIGKILL');
      await holder.exited;
    }
  }, 90_000);

  it('a key the server refuses (a NUL in its text: 22021) fails that hold alone: the session, and every lock it holds for others, stays', async () => {
    const kept = await hold();
    expect(kept?.held).toBe(true);
    const before = (await holders()).map((h) => h.pid);
    await expect(other.tryHold('bad', `4245, hashtext($1::text)`, ['a\u0000b'])).rejects.toThrow(
      /0x00|invalid byte sequence/,
    );
    expect(kept?.held).toBe(true);
    expect((await holders()).map((h) => h.pid)).toEqual(before);
    const next = await other.tryHold('bad', `4245, hashtext($1::text)`, ['ab']);
    expect(next?.held).toBe(true);
    await Promise.all([kept?.release(), next?.release()]);
  });
});
