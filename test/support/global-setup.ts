import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { dropTestDatabases, serverUrl, templateDatabase, withAdminClient } from './databases';

/**
 * Migrates a fresh template database once per run (through the real migration CLI), so each
 * test file can clone it in milliseconds with CREATE DATABASE … TEMPLATE.
 */
export default async function globalSetup(): Promise<void> {
  process.env.SHOP_TEST_RUN = String(process.pid);
  await withAdminClient(async (c) => {
    await dropTestDatabases(c, { own: true });
    await c.query(`CREATE DATABASE "${templateDatabase()}"`);
  });
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
      env: { ...process.env, DATABASE_URL: serverUrl(templateDatabase()) },
    },
  );
}
