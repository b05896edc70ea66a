import type { MigrationInterface, QueryRunner } from 'typeorm';
import {
  MIGRATION_LOCK_TIMEOUT_MS,
  dataSourceOptions,
} from '../../src/database/data-source-options';
import { MigratingDataSource } from '../../src/database/migrating-data-source';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/** What the session a migration runs on says its lock_timeout is. */
const seen: string[] = [];

class ProbeLockTimeout1700000000000 implements MigrationInterface {
  name = 'ProbeLockTimeout1700000000000';
  async up(runner: QueryRunner): Promise<void> {
    const [row] = (await runner.query('SHOW lock_timeout')) as { lock_timeout: string }[];
    seen.push(row.lock_timeout);
  }
  async down(runner: QueryRunner): Promise<void> {
    await this.up(runner);
  }
}

/**
 * A migration waits for a table's lock at most MIGRATION_LOCK_TIMEOUT_MS — also where the
 * connection's startup `options` are dropped (a session-mode PgBouncer with
 * `ignore_startup_parameters = options`, as docs/SCALING.md sets it): here the URL's own options
 * put lock_timeout back to 0 after the app's, as such a pooler's server connection would have it.
 */
describe('a migration run keeps its lock_timeout when the startup options are dropped', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('runs and reverts each migration with lock_timeout set by a statement on its session', async () => {
    const url = new URL(db.url);
    url.searchParams.set('options', '-c lock_timeout=0');
    const source = new MigratingDataSource({
      ...dataSourceOptions(url.toString(), { withMigrations: true }),
      migrations: [ProbeLockTimeout1700000000000],
      migrationsTableName: 'probe_migrations',
    });
    await source.initialize();
    try {
      // (the startup options as the pooler leaves them: no lock_timeout)
      expect((await source.query('SHOW lock_timeout'))[0].lock_timeout).toBe('0');
      await source.runMigrations();
      await source.undoLastMigration();
    } finally {
      await source.destroy();
    }
    expect(seen).toEqual([
      `${MIGRATION_LOCK_TIMEOUT_MS / 1000}s`,
      `${MIGRATION_LOCK_TIMEOUT_MS / 1000}s`,
    ]);
  });
});
