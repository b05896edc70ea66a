import { randomBytes } from 'node:crypto';
import { Pool } from 'pg';
import { runNamespace, serverUrl, templateDatabase, withAdminClient } from './databases';

export interface TestDatabase {
  name: string;
  url: string;
  /** A direct pool for invariant checks and fixtures, outside the app. */
  pool: Pool;
  drop(): Promise<void>;
}

/** A private, migrated database for one test file, cloned from the template. */
export function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase('', `TEMPLATE "${templateDatabase()}"`);
}

/**
 * An empty database for one test (no migration run: the template's clone is migrated to the end),
 * made with `options` after CREATE DATABASE (e.g. `ENCODING 'SQL_ASCII' … TEMPLATE template0`).
 */
export function createEmptyDatabase(options = ''): Promise<TestDatabase> {
  return createDatabase('e', options);
}

async function createDatabase(tag: string, options: string): Promise<TestDatabase> {
  const name = `${runNamespace()}${process.env.JEST_WORKER_ID ?? '0'}_${tag}${randomBytes(4).toString('hex')}`;
  await withAdminClient((c) => c.query(`CREATE DATABASE "${name}" ${options}`));
  const url = serverUrl(name);
  const pool = new Pool({ connectionString: url, max: 4 });
  // DROP DATABASE … WITH (FORCE) at the end may terminate an idle client: not a test failure
  pool.on('error', () => undefined);
  return {
    name,
    url,
    pool,
    drop: async () => {
      await pool.end();
      await withAdminClient((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}
