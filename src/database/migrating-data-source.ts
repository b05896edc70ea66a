import { DataSource } from 'typeorm';
import type { Migration } from 'typeorm';

/** Session advisory lock key of a migration run ('MIGR'). */
const MIGRATION_LOCK = 0x4d494752;

/**
 * The DataSource the migration commands use (ormconfig.ts): runs (and reverts) migrations one after
 * the other under a session advisory lock, so two runs at once (two hosts' `npm start`, an overlapping
 * `docker compose run migrate`) take turns — the second finds the first's work recorded and has
 * nothing left to do — instead of both applying the same pending list (the second failing on
 * "already exists", or recording a data migration twice).
 */
export class MigratingDataSource extends DataSource {
  override runMigrations(options?: Parameters<DataSource['runMigrations']>[0]): Promise<Migration[]> {
    return this.inTurn(() => super.runMigrations(options));
  }

  /** A revert takes its turn too (it would undo the migration a run is just applying on top of). */
  override undoLastMigration(options?: Parameters<DataSource['undoLastMigration']>[0]): Promise<void> {
    return this.inTurn(() => super.undoLastMigration(options));
  }

  private async inTurn<T>(work: () => Promise<T>): Promise<T> {
    const lock = this.createQueryRunner();
    await lock.connect();
    try {
      // waits its turn however long the other run takes (the migrations' own lock_timeout is for
      // the tables' locks, not this one)
      await lock.query('SET lock_timeout = 0');
      await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      return await work();
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await lock.query('RESET lock_timeout').catch(() => undefined);
      await lock.release();
    }
  }
}
