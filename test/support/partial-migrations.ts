import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { MigrationInterface } from 'typeorm';
import { dataSourceOptions, migrationsFolder } from '../../src/database/data-source-options';
import { MigratingDataSource } from '../../src/database/migrating-data-source';
import { runNamespace, serverUrl, withAdminClient } from './databases';
import type { TestDatabase } from './test-database';

/**
 * An empty database for one test (no migration run: the template's clone is migrated to the end),
 * made with `options` after CREATE DATABASE (e.g. `ENCODING 'SQL_ASCII' … TEMPLATE template0`).
 */
export async function createEmptyDatabase(options = ''): Promise<TestDatabase> {
  const name = `${runNamespace()}${process.env.JEST_WORKER_ID ?? '0'}_e${randomBytes(4).toString('hex')}`;
  await withAdminClient((c) => c.query(`CREATE DATABASE "${name}" ${options}`));
  const url = serverUrl(name);
  const pool = new Pool({ connectionString: url, max: 4 });
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

/** The project's migrations up to and including timestamp `last`, in order. */
function migrationsUpTo(last: number): (new () => MigrationInterface)[] {
  return readdirSync(migrationsFolder())
    .filter((f) => /^\d+-.+\.ts$/.test(f) && Number(f.slice(0, f.indexOf('-'))) <= last)
    .sort()
    .map((f) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const exported = require(join(migrationsFolder(), f)) as Record<string, unknown>;
      return Object.values(exported)[0] as new () => MigrationInterface;
    });
}

/**
 * Migrates `url` as a database deployed with the build whose newest migration was `last`: the
 * project's migrations up to it, recorded in schema_migrations as the CLI records them, so a later
 * `migrate(url)` (the real CLI) runs the rest.
 */
export async function migrateUpTo(url: string, last: number): Promise<void> {
  const source = new MigratingDataSource({
    ...dataSourceOptions(url, { withMigrations: true }),
    migrations: migrationsUpTo(last),
    logging: false,
    logger: 'simple-console',
  });
  await source.initialize();
  try {
    await source.runMigrations();
  } finally {
    await source.destroy();
  }
}
