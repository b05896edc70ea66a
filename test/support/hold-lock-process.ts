import { AdvisoryLockSession } from '../../src/database/advisory-lock-session';

/**
 * A process that holds one advisory lock on a lock session with an idle limit and then just
 * lives (test/e2e/lock-session-idle.test.ts stops it with SIGSTOP). Env: LOCK_URL, IDLE_MS.
 */
async function main(): Promise<void> {
  const session = new AdvisoryLockSession(process.env.LOCK_URL as string, {
    applicationName: 'test-idle-locks',
    retakeLostHolds: true,
    idleSessionTimeoutMs: Number(process.env.IDLE_MS),
  });
  const hold = await session.tryHold('pass', `4244, hashtext($1::text)`, ['pass']);
  process.stdout.write(hold?.held ? 'held\n' : 'not held\n');
  setInterval(() => process.stdout.write(hold?.held ? 'still held\n' : 'lost\n'), 500);
}

void main();
