import { DataSource, MigrationExecutor } from 'typeorm';
import type { Migration, QueryRunner } from 'typeorm';
import { MIGRATION_LOCK_TIMEOUT_MS } from './data-source-options';

/** Session advisory lock key of a migration run ('MIGR'). */
const MIGRATION_LOCK = 0x4d494752;

/**
 * The DataSource the migration commands use (ormconfig.ts): runs (and reverts) migrations one after
 * the other under a session advisory lock, so two runs at once (two hosts' `npm start`, an overlapping
 * `docker compose run migrate`) take turns — the second finds the first's work recorded and has
 * nothing left to do — instead of both applying the same pending list (the second failing on
 * "already exists", or recording a data migration twice).
 *
 * The migrations run on the session that holds the lock, with their `lock_timeout` set on it by a
 * statement: the startup option that also sets it (dataSourceOptions) is dropped by a session-mode
 * PgBouncer told to ignore `options` (docs/SCALING.md), and a migration would then wait for a
 * table's lock for as long as a reader held it, every request on that table queued behind it.
 */
export class MigratingDataSource extends DataSource {
  override runMigrations(
    options?: Parameters<DataSource['runMigrations']>[0],
  ): Promise<Migration[]> {
    return this.inTurn((runner) => {
      const executor = new MigrationExecutor(this, runner);
      // (DataSource.runMigrations' own defaults)
      executor.transaction =
        options?.transaction || this.options.migrationsTransactionMode || 'all';
      executor.fake = options?.fake ?? false;
      return executor.executePendingMigrations();
    });
  }

  /** A revert takes its turn too (it would undo the migration a run is just applying on top of). */
  override undoLastMigration(
    options?: Parameters<DataSource['undoLastMigration']>[0],
  ): Promise<void> {
    return this.inTurn((runner) => {
      const executor = new MigrationExecutor(this, runner);
      executor.transaction = options?.transaction || 'all';
      executor.fake = options?.fake ?? false;
      return executor.undoLastMigration();
    });
  }

  private async inTurn<T>(work: (runner: QueryRunner) => Promise<T>): Promise<T> {
    const lock = this.createQueryRunner();
    await lock.connect();
    try {
      // waits its turn however long the other run takes (the migrations' own lock_timeout is for
      // the tables' locks, not this one)
      await lock.query('SET lock_timeout = 0');
      await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await lock.query(`SET lock_timeout = ${MIGRATION_LOCK_TIMEOUT_MS}`);
      return await work(lock);
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await lock.query('RESET lock_timeout').catch(() => undefined);
      await lock.release();
    }
  }
}
