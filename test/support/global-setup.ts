import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { TEMPLATE_DB, TEST_DB_PREFIX, serverUrl, withAdminClient } from './databases';

/**
 * Migrates a fresh template database once per run (through the real migration CLI), so each
 * test file can clone it in milliseconds with CREATE DATABASE … TEMPLATE.
 */
export default async function globalSetup(): Promise<void> {
  await withAdminClient(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE $1`,
      [`${TEST_DB_PREFIX}%`],
    );
    for (const { datname } of rows) {
      await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await c.query(`CREATE DATABASE "${TEMPLATE_DB}"`);
  });
  const root = join(__dirname, '..', '..');
  execFileSync(
    process.execPath,
    [
      '-r',
      'ts-node/register',
      join(root, 'node_modules', 'typeorm', 'cli.js'),
      'migration:run',
      '-d',
      join(root, 'ormconfig.ts'),
    ],
    {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        DATABASE_URL: serverUrl(TEMPLATE_DB),
        TS_NODE_TRANSPILE_ONLY: 'true',
        TS_NODE_SWC: 'true',
      },
    },
  );
}
