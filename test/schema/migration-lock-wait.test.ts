import { Client } from 'pg';
import type { Logger, MigrationInterface } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { MIGRATION_LOCK, MigratingDataSource } from '../../src/database/migrating-data-source';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

let ran = 0;
class ProbeTurn1700000000000 implements MigrationInterface {
  name = 'ProbeTurn1700000000000';
  async up(): Promise<void> {
    ran++;
  }
  async down(): Promise<void> {}
}

/**
 * A migration run that finds the lock taken — another deploy's run, or a killed deploy's backend
 * still running its statement — says so once, naming the holder's pid, application_name and how
 * long its transaction has been running, then waits for its turn as before (it waited silently:
 * a deploy that looked hung).
 */
describe('a migration run waiting for the migration lock', () => {
  let db: TestDatabase;
  let holder: Client;
  beforeAll(async () => {
    db = await createTestDatabase();
    holder = new Client({ connectionString: db.url, application_name: 'killed-deploy' });
    await holder.connect();
  });
  afterAll(async () => {
    await holder?.end();
    await db?.drop();
  });

  it("says who holds it (pid, application_name, its transaction's age), then takes its turn when it is released", async () => {
    const warnings: string[] = [];
    const logger: Logger = {
      logQuery: () => undefined,
      logQueryError: () => undefined,
      logQuerySlow: () => undefined,
      logSchemaBuild: () => undefined,
      logMigration: () => undefined,
      log: (level, message) => {
        if (level === 'warn') warnings.push(String(message));
      },
    };
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))
      .rows[0].pid;
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await new Promise((resolve) => setTimeout(resolve, 1100));

    const source = new MigratingDataSource({
      ...dataSourceOptions(db.url, { withMigrations: true }),
      migrations: [ProbeTurn1700000000000],
      migrationsTableName: 'probe_migrations',
      logger,
    });
    await source.initialize();
    try {
      let done = false;
      const run = source.runMigrations().finally(() => {
        done = true;
      });
      run.catch(() => undefined); // (awaited below; a failed assertion before must not leave it unhandled)
      await waitFor('the run says who holds the lock', () => warnings.length > 0, {
        timeoutMs: 10_000,
      });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        new RegExp(
          `^The migration lock is held by pid ${holderPid} \\(application_name "killed-deploy", its transaction running for [1-9]\\d* s\\): waiting for it`,
        ),
      );
      // still waiting: nothing ran
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(done).toBe(false);
      expect(ran).toBe(0);

      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      await holder.query('COMMIT');
      await run;
      expect(ran).toBe(1);
      expect(warnings).toHaveLength(1);

      // a run that finds the lock free says nothing
      await source.undoLastMigration();
      expect(warnings).toHaveLength(1);
    } finally {
      await source.destroy();
    }
  });
});
