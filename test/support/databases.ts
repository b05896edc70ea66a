import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { loadDatabaseConfig } from '../../src/config/config';

const TEST_DB_PREFIX = 'shop_test_';

/**
 * Each jest run owns a namespace (its parent pid), so several runs on one machine never drop
 * each other's databases. Set by global-setup and inherited by the workers.
 */
export function runNamespace(): string {
  const ns = process.env.SHOP_TEST_RUN;
  if (!ns) throw new Error('SHOP_TEST_RUN is not set: run integration tests through jest');
  return `${TEST_DB_PREFIX}${ns}_`;
}

export function templateDatabase(): string {
  return `${runNamespace()}tpl`;
}

/**
 * The test server's URL: DATABASE_URL, else the local development default (jest's global setup
 * runs with NODE_ENV=test, which has no default).
 */
const testServerUrl = (): string =>
  loadDatabaseConfig({ ...process.env, NODE_ENV: 'development' }).url;

/** The server that hosts the test databases: the one DATABASE_URL points at. */
export function serverUrl(database: string): string {
  const url = new URL(testServerUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

function adminDatabase(): string {
  return new URL(testServerUrl()).pathname.slice(1) || 'postgres';
}

export async function withAdminClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: serverUrl(adminDatabase()) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Whether process `pid` still runs (the owner of a run's leftovers). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Drops this run's databases, and those left behind by runs whose process is gone. */
export async function dropTestDatabases(c: Client, opts: { own: boolean }): Promise<void> {
  const { rows } = await c.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE $1`,
    [`${TEST_DB_PREFIX}%`],
  );
  for (const { datname } of rows) {
    const pid = Number(/^shop_test_(\d+)_/.exec(datname)?.[1]);
    const own = datname.startsWith(runNamespace());
    if ((own && opts.own) || (!own && Number.isFinite(pid) && !alive(pid))) {
      await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  }
}

/** Applies the project's migrations to `url` through the real TypeORM CLI (as production does). */
export function migrate(url: string): void {
  const root = join(__dirname, '..', '..');
  execFileSync(
    process.execPath,
    [
      '-r',
      join(root, 'scripts', 'ts-register.js'),
      join(root, 'node_modules', 'typeorm', 'cli.js'),
      'migration:run',
      '-d',
      join(root, 'ormconfig.ts'),
    ],
    {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DATABASE_URL: url },
    },
  );
}
