import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../support/ports';
import { ROOT, redisPrefixFor } from '../support/processes';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

/**
 * `npm start` stopped by a supervisor: the SIGTERM goes to npm, which passes it to its script's
 * shell. That shell was dash (`sh -c "bash scripts/start.sh"`), which passes no signal on: it died
 * alone, and scripts/start.sh, the API and the worker went on running, orphaned — the next
 * deploy's `npm start` then failed on the port (shutdown review). The script now `exec`s bash.
 */
describe('npm start under a supervisor', () => {
  let db: TestDatabase;
  let checkout: string;
  let npm: ChildProcess | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    // the checkout through links: node_modules a link, which start.sh never installs through (a
    // lockfile newer than it would otherwise run `npm ci` under the running suite), and no .env
    checkout = mkdtempSync(join(tmpdir(), 'npm-start-signals-'));
    for (const name of readdirSync(ROOT))
      if (name !== '.env' && name !== 'var') symlinkSync(join(ROOT, name), join(checkout, name));
  });
  afterAll(async () => {
    if (npm?.pid && npm.exitCode === null) process.kill(npm.pid, 'SIGKILL');
    rmSync(checkout, { recursive: true, force: true });
    await db?.drop();
  });

  it('a SIGTERM to npm itself stops the API and the worker gracefully, and npm exits', async () => {
    const port = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    npm = spawn('npm', ['start'], {
      cwd: checkout,
      env: {
        ...env,
        NODE_ENV: 'development',
        ENV_FILE: '',
        DATABASE_URL: db.url,
        REDIS_KEY_PREFIX: redisPrefixFor(db.url),
        PORT: String(port),
        METRICS_PORT: '0',
        WORKER_METRICS_PORT: '0',
        LOG_LEVEL: 'warn',
        MAIL_OUTBOX_DIR: join(checkout, 'mail'),
        // no local image store on :9000 (another test's may be there)
        STORAGE_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    npm.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      npm!.on('exit', (code) => resolve(code)),
    );
    await waitFor(
      'the API of npm start to be ready',
      async () =>
        (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => null))?.status === 200,
      { timeoutMs: 90_000 },
    );
    expect(out).toContain('worker running');
    npm.kill('SIGTERM');
    expect(await exited).not.toBeNull();
    expect(out).toContain('[start] stopping API and worker');
    expect(out).toContain('[start] stopped');
    // nothing left serving (the orphaned API went on answering 200)
    expect(await fetch(`http://127.0.0.1:${port}/health/live`).catch(() => 'refused')).toBe(
      'refused',
    );
  }, 150_000);
});
