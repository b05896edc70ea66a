import { spawn } from 'node:child_process';
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { freePort } from '../support/ports';
import { PrivatePostgres } from '../support/private-postgres';
import { ROOT, redisPrefixFor } from '../support/processes';

/** The password of the URLs below: never in a line the commands write. */
const PASSWORD = 'rotated-away-5d1e';

/**
 * The commands an operator runs on the database, each as its npm script runs it. `npm start` runs
 * in a checkout of links (`linked`): its node_modules a link, which start.sh never installs
 * through (a lockfile newer than it would otherwise run `npm ci` under the running suite); outside
 * development, so that it sets up no local services and stops at its migrations.
 */
const COMMANDS: Record<string, { argv: string[]; env?: Record<string, string>; linked?: true }> = {
  'migration:run': { argv: ['npm', 'run', '--silent', 'migration:run'] },
  'npm start': { argv: ['npm', 'start'], env: { NODE_ENV: 'production' }, linked: true },
  seed: { argv: [process.execPath, '-r', './scripts/ts-register.js', 'scripts/seed.ts'] },
  'admin:create': {
    argv: [
      process.execPath,
      '-r',
      './scripts/ts-register.js',
      'scripts/admin-create.ts',
      '--email',
      'refused@shop.test',
    ],
    env: { ADMIN_PASSWORD: 'a-refused-admin-1' },
  },
  'payments:orphans': {
    argv: [
      process.execPath,
      '-r',
      './scripts/ts-register.js',
      'scripts/payments-orphans.ts',
      '--since',
      '2026-01-01',
    ],
  },
};

/** A checkout of links to this one's files (no .env): `npm start`'s working directory. */
let checkout: string;

/**
 * `command` run on `url`, in a process group of its own: its exit code and everything it wrote
 * (stdout and stderr, as they came).
 */
function run(
  command: string,
  url: string,
): Promise<{ command: string; code: number | null; out: string }> {
  const { argv, env, linked } = COMMANDS[command];
  const p = spawn(argv[0], argv.slice(1), {
    cwd: linked ? checkout : ROOT,
    detached: true,
    env: {
      ...process.env,
      DATABASE_URL: url,
      REDIS_KEY_PREFIX: redisPrefixFor(url),
      LOG_LEVEL: 'error',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // one that hangs (or goes on to start the API) is a failure either way: its whole group
  const timer = setTimeout(() => process.kill(-p.pid!, 'SIGKILL'), 60_000);
  return new Promise((resolve) =>
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ command, code, out });
    }),
  );
}

/** Every command on `url`, side by side. */
const runAll = (url: string) => Promise.all(Object.keys(COMMANDS).map((c) => run(c, url)));

/**
 * The operator commands on a DATABASE_URL whose server refuses the sign-in — a password a rotation
 * left stale, a role or database that does not exist — stop as the API and the worker do
 * (test/e2e/database-credentials.test.ts): exit code EXIT_CONFIG and one line naming DATABASE_URL,
 * the SQLSTATE and the server's reason, never the password. They exited 1 with a stack (Nest's of
 * the error; the TypeORM CLI's of pg's error, every field of it — `npm start` the same, at its
 * migrations), which an orchestrator (systemd's RestartPreventExitStatus, a Job's backoff) cannot
 * tell from an outage worth another try. A server that does not answer stays such an outage: exit
 * 1 (payments:orphans: 3, "not all checked" — its 1 says "found"). On a private PostgreSQL, which
 * checks one role's password (scram-sha-256; trust for the rest).
 */
describe('the operator commands on a DATABASE_URL whose server refuses the sign-in', () => {
  const role = 'shop_rotated';
  let pg: PrivatePostgres;
  beforeAll(async () => {
    checkout = mkdtempSync(join(tmpdir(), 'database-credentials-commands-'));
    for (const name of readdirSync(ROOT))
      if (name !== '.env' && name !== 'var') symlinkSync(join(ROOT, name), join(checkout, name));
    pg = await PrivatePostgres.start();
    const hba = join(pg.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all ${role} 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    const admin = new Client({ connectionString: pg.url() });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'the-new-one-after-rotation'`);
      await admin.query(`SELECT pg_reload_conf()`);
    } finally {
      await admin.end();
    }
  }, 60_000);
  afterAll(async () => {
    await pg?.destroy();
    if (checkout) rmSync(checkout, { recursive: true, force: true });
  });

  /** `pg`'s database `database` as `user`, signing in with PASSWORD. */
  const as = (user: string, database = 'postgres', port = pg.port) =>
    `postgres://${user}:${PASSWORD}@127.0.0.1:${port}/${database}`;

  /**
   * Each run exited EXIT_CONFIG and said `refusal` once, in a line of its own, with no stack trace
   * and no password (every command's outcome in one comparison).
   */
  function expectRefused(
    runs: { command: string; code: number | null; out: string }[],
    refusal: string,
  ) {
    const line = `DATABASE_URL: the database refused the connection (SQLSTATE ${refusal}). Give DATABASE_URL the user, password and database the server has`;
    expect(
      runs.map(({ command, code, out }) => ({
        command,
        code,
        said: out.split('\n').filter((l) => l.startsWith(line)).length,
        stack: /\n\s+at /.test(out),
        password: out.includes(PASSWORD),
      })),
    ).toEqual(
      runs.map(({ command }) => ({
        command,
        code: EXIT_CONFIG,
        said: 1,
        stack: false,
        password: false,
      })),
    );
  }

  it('a password the server no longer takes (28P01): exit code EXIT_CONFIG, one line naming DATABASE_URL, the SQLSTATE and the reason', async () => {
    expectRefused(
      await runAll(as(role)),
      `28P01: password authentication failed for user "${role}"`,
    );
  }, 120_000);

  it('a role the server does not have (28000): the same', async () => {
    expectRefused(await runAll(as('shop_gone')), '28000: role "shop_gone" does not exist');
  }, 120_000);

  it('a database the server does not have (3D000): the same', async () => {
    expectRefused(
      await runAll(as('postgres', 'shop_gone')),
      '3D000: database "shop_gone" does not exist',
    );
  }, 120_000);

  it('a server that does not answer is no refusal: exit 1 (payments:orphans 3), as the API’s', async () => {
    const runs = await runAll(as('postgres', 'postgres', await freePort()));
    expect(runs.map(({ command, code }) => ({ command, code }))).toEqual(
      Object.keys(COMMANDS).map((command) => ({
        command,
        code: command === 'payments:orphans' ? 3 : 1,
      })),
    );
    for (const { command, out } of runs) {
      expect([command, out]).toEqual([command, expect.stringContaining('ECONNREFUSED')]);
      expect([command, out]).not.toEqual([
        command,
        expect.stringContaining('refused the connection'),
      ]);
      expect([command, out]).not.toEqual([command, expect.stringContaining(PASSWORD)]);
    }
  }, 120_000);
  it('a configuration that does not hold (whitespace around DATABASE_URL): the migration CLI exits EXIT_CONFIG with the message alone, as the API does — it printed a load error with its stack and exited 1', async () => {
    const { code, out } = await run('migration:run', ` ${as('postgres')}`);
    expect({ code, stack: /\n\s+at /.test(out), password: out.includes(PASSWORD) }).toEqual({
      code: EXIT_CONFIG,
      stack: false,
      password: false,
    });
    expect(out).toContain('DATABASE_URL: begins or ends with whitespace');
  }, 120_000);
});
