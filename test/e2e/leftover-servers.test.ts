import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive } from '../support/databases';
import { sweepPrivateServers } from '../support/leftover-servers';
import { onOneConnection } from '../support/private-redis';
import { ROOT } from '../support/processes';
import { waitFor } from '../support/wait-for';

/**
 * A run interrupted (Ctrl-C, a killed jest) used to leave its tests' private PostgreSQL and Redis
 * servers running for good: the `exit` handler meant to stop them never fires under jest. The
 * global setup and teardown now stop the servers of runs that are gone.
 */
describe('private servers left by a run that is gone', () => {
  it("are stopped and removed by the next sweep; a live run's are left alone", async () => {
    const deadRun = String(
      Number(execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim()),
    );
    const start = (run: string) =>
      execFileSync(
        process.execPath,
        ['-r', './scripts/ts-register.js', 'test/support/abandon-private-servers.ts'],
        {
          cwd: ROOT,
          env: { ...process.env, SHOP_TEST_RUN: run },
          encoding: 'utf8',
        },
      )
        .trim()
        .split(' ');
    const [deadDir, deadPort] = start(deadRun);
    // a run still going (this test's process: alive, and not this jest run, whose other test
    // files' servers this test must never touch)
    const liveRun = String(process.pid);
    const [liveDir, livePort] = start(liveRun);
    const postmaster = (dir: string) =>
      Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const deadPostmaster = postmaster(deadDir);
    const livePostmaster = postmaster(liveDir);
    try {
      expect(alive(deadPostmaster)).toBe(true);
      const swept = sweepPrivateServers({ own: false });
      // gone — by this sweep, or by that of another jest run on this machine starting meanwhile
      // (its global setup sweeps too: it took the dead run's Redis first, and this one found
      // nothing left of it)
      expect(swept).not.toContain(liveDir);
      expect(swept).not.toContain(`redis:${livePort}`);
      expect(alive(deadPostmaster)).toBe(false);
      expect(existsSync(deadDir)).toBe(false);
      expect(existsSync(join(tmpdir(), `shop-test-redis-${deadPort}`))).toBe(false);
      await refusesConnections(deadPort);
      expect(alive(livePostmaster)).toBe(true);
      expect(await onOneConnection(`redis://127.0.0.1:${livePort}`, (c) => c.ping())).toBe('PONG');
    } finally {
      // the servers this test started as a live run's, and only those
      sweepPrivateServers({ run: liveRun });
      sweepPrivateServers({ run: deadRun });
    }
    expect(alive(livePostmaster)).toBe(false);
    await refusesConnections(livePort);
  }, 60_000);
});

/** The Redis server that was on `port` is gone (killed: a moment later): a connection is refused. */
async function refusesConnections(port: string): Promise<void> {
  await waitFor(
    `the Redis server on port ${port} to be gone`,
    async () =>
      (await onOneConnection(`redis://127.0.0.1:${port}`, async () => true)) === undefined,
  );
}
