import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
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
  // whatever a test left running (its group: npm, start.sh, the API, the worker)
  afterEach(() => {
    if (npm?.pid)
      try {
        process.kill(-npm.pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
    npm = undefined;
  });
  afterAll(async () => {
    rmSync(checkout, { recursive: true, force: true });
    await db?.drop();
  });

  /**
   * `npm start` in the linked checkout, on its own database and free ports, in a process group of
   * its own, as a terminal's foreground job is (Ctrl-C signals the whole group).
   */
  async function npmStart(opts: { path?: string } = {}) {
    const port = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    const child = spawn('npm', ['start'], {
      cwd: checkout,
      detached: true,
      env: {
        ...env,
        ...(opts.path ? { PATH: opts.path } : {}),
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
    npm = child;
    const output = { text: '' };
    child.stdout.on('data', (d: Buffer) => (output.text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output.text += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    return { child, port, output, exited };
  }

  /**
   * A PATH whose `npm` makes start.sh's migration step slow, deterministically: `npm run --silent
   * migration:run` marks `started`, sleeps, marks `finished`, then runs the real npm (anything
   * else goes straight to it). The files say whether a stop let the step finish or cut it.
   */
  function slowMigrationsPath(dir: string): { path: string; started: string; finished: string } {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const realNpm = execFileSync('bash', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
    const started = join(dir, 'migrations-started');
    const finished = join(dir, 'migrations-finished');
    writeFileSync(
      join(bin, 'npm'),
      `#!/usr/bin/env bash
if [ "$*" = "run --silent migration:run" ]; then
  touch ${JSON.stringify(started)}
  sleep 4
  touch ${JSON.stringify(finished)}
fi
exec ${JSON.stringify(realNpm)} "$@"
`,
      { mode: 0o755 },
    );
    return { path: `${bin}:${process.env.PATH ?? ''}`, started, finished };
  }

  it('a SIGTERM to npm itself stops the API and the worker gracefully, and npm exits', async () => {
    const { child, port, output, exited } = await npmStart();
    await waitFor(
      'the API of npm start to be ready',
      async () =>
        (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => null))?.status === 200,
      { timeoutMs: 90_000 },
    );
    expect(output.text).toContain('worker running');
    child.kill('SIGTERM');
    expect(await exited).not.toBeNull();
    expect(output.text).toContain('[start] stopping API and worker');
    expect(output.text).toContain('[start] stopped');
    // nothing left serving (the orphaned API went on answering 200)
    expect(await fetch(`http://127.0.0.1:${port}/health/live`).catch(() => 'refused')).toBe(
      'refused',
    );
  }, 150_000);

  it('a SIGTERM to npm during the setup ends the start once the step under way has finished: nothing is started, exit 143', async () => {
    const slow = slowMigrationsPath(join(checkout, 'sigterm'));
    const { child, port, output, exited } = await npmStart({ path: slow.path });
    await waitFor('the migration step of npm start', () => existsSync(slow.started), {
      timeoutMs: 90_000,
    });
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    // the step under way (the migrations) finished; nothing after it ran
    expect(existsSync(slow.finished)).toBe(true);
    expect(output.text).toContain('[start] stopped before the API and the worker started');
    expect(output.text).not.toContain('[start] seeding demo data');
    expect(output.text).not.toContain('worker running');
    expect(await fetch(`http://127.0.0.1:${port}/health/live`).catch(() => 'refused')).toBe(
      'refused',
    );
  }, 150_000);

  it('Ctrl-C during the setup (SIGINT to the whole process group) interrupts the step under way: nothing is started, exit 130', async () => {
    const slow = slowMigrationsPath(join(checkout, 'sigint'));
    const { child, port, output, exited } = await npmStart({ path: slow.path });
    await waitFor('the migration step of npm start', () => existsSync(slow.started), {
      timeoutMs: 90_000,
    });
    process.kill(-child.pid!, 'SIGINT');
    expect(await exited).toBe(130);
    // the step under way was cut (a migration is one transaction: rolled back)
    expect(existsSync(slow.finished)).toBe(false);
    expect(output.text).toContain('[start] stopped before the API and the worker started');
    expect(output.text).not.toContain('worker running');
    expect(await fetch(`http://127.0.0.1:${port}/health/live`).catch(() => 'refused')).toBe(
      'refused',
    );
  }, 150_000);
});
