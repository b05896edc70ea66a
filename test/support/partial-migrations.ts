import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationInterface } from 'typeorm';
import { dataSourceOptions, migrationsFolder } from '../../src/database/data-source-options';
import { MigratingDataSource } from '../../src/database/migrating-data-source';

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
