import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive } from './databases';

/**
 * The private servers a test starts (PrivatePostgres, PrivateRedis) are stopped by the test itself.
 * A run interrupted (Ctrl-C, a killed jest, a test that crashed its worker) leaves them running:
 * jest gives each test file its own `process` object, so an `exit` handler there never fires. Each
 * server is therefore marked with the run that started it (SHOP_TEST_RUN, the jest process's pid),
 * and the global setup and teardown stop those of runs that are gone — the teardown also this
 * run's own, every test being over by then.
 */

const RUN_MARK = 'shop-test-run';
const REDIS_MARK = /^shop-test-redis-(\d+)$/;

/** The run a server belongs to: the jest process's pid (its global setup sets it). */
function testRun(): string {
  return process.env.SHOP_TEST_RUN ?? String(process.pid);
}

/** Marks a PrivatePostgres data folder as this run's. */
export function markPostgres(dataDir: string): void {
  writeFileSync(join(dataDir, RUN_MARK), testRun());
}

/** Marks a PrivateRedis server (by its port and pid) as this run's. */
export function markRedis(port: number, pid: number): void {
  writeFileSync(join(tmpdir(), `shop-test-redis-${port}`), `${testRun()} ${pid}`);
}

export function unmarkRedis(port: number): void {
  rmSync(join(tmpdir(), `shop-test-redis-${port}`), { force: true });
}

const leftOver = (run: string, opts: SweepOptions): boolean => {
  if (opts.run !== undefined) return run === opts.run;
  const own = run === testRun();
  const pid = Number(run);
  return own ? opts.own === true : Number.isInteger(pid) && pid > 0 && !alive(pid);
};

/**
 * Which servers: those of runs that are gone (and this run's, with `own`: only once every test
 * is over — the global teardown — since the other test files of the run may be using theirs), or
 * those marked with exactly `run`.
 */
type SweepOptions = { own?: boolean; run?: string };

/** Stops and removes the private servers of runs that are gone (and this run's, with `own`). */
export function sweepPrivateServers(opts: SweepOptions): string[] {
  const swept: string[] = [];
  for (const name of readdirSync(tmpdir())) {
    const path = join(tmpdir(), name);
    if (name.startsWith('pg-') && existsSync(join(path, RUN_MARK))) {
      const run = readIfExists(join(path, RUN_MARK)).trim();
      if (!run || !leftOver(run, opts)) continue;
      stopPostgres(path);
      rmSync(path, { recursive: true, force: true });
      swept.push(path);
      continue;
    }
    const port = REDIS_MARK.exec(name)?.[1];
    if (!port) continue;
    // (read as it may go: its server being stopped by its own test meanwhile)
    const [run, pid] = readIfExists(path).trim().split(' ');
    if (!run) continue;
    if (!leftOver(run, opts)) continue;
    // only that very server: a pid reused since by another process is left alone
    const cmdline = readIfExists(`/proc/${pid}/cmdline`);
    if (cmdline.includes('redis-server') && cmdline.includes(`:${port}`))
      process.kill(Number(pid), 'SIGKILL');
    rmSync(path, { force: true });
    swept.push(`redis:${port}`);
  }
  return swept;
}

function stopPostgres(dataDir: string): void {
  const pidLine = readIfExists(join(dataDir, 'postmaster.pid')).split('\n')[0]?.trim();
  const pid = Number(pidLine);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  // only the postmaster of that folder (its pid could have been reused since)
  if (!readIfExists(`/proc/${pid}/cmdline`).includes(dataDir)) return;
  process.kill(pid, 'SIGQUIT'); // PostgreSQL's immediate shutdown
  for (let i = 0; i < 100 && alive(pid); i++) execFileSync('sleep', ['0.05']);
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
