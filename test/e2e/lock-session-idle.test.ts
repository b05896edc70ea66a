import { AdvisoryLockSession } from '../../src/database/advisory-lock-session';
import { runScript } from '../support/processes';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

const IDLE_MS = 3_000;

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
      // alive for well past the limit: still held, and another process cannot take it
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 2.5));
      expect(await hold()).toBeNull();
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
  }, 60_000);
});
