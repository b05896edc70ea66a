import 'reflect-metadata';
import { commandFailed } from './scripts/command-failed';
import { loadDatabaseConfig } from './src/config/config';
import { loadEnvFile } from './src/config/env-file';
import { ConnectionRefused, lockUrlVariable, refusedAs } from './src/database/connection-refusal';
import { dataSourceOptions } from './src/database/data-source-options';
import { MigratingDataSource, RevertNotConfirmed } from './src/database/migrating-data-source';

/**
 * The DataSource used by the TypeORM CLI (migration:run / revert / generate), built from the
 * same configuration and options as the application. Works from sources (scripts/ts-register.js) and from dist/.
 * Migrating needs only DATABASE_URL (from the environment or .env): no application secrets,
 * whatever NODE_ENV is. It connects over DATABASE_LOCK_URL when that is set — the route to
 * PostgreSQL directly (or a session-mode pool) beside a transaction-mode PgBouncer on
 * DATABASE_URL: through that bouncer the run lock, a session advisory lock, leaked to a server
 * connection and the next deploy's migration waited for it with no timeout, and the migrations'
 * `lock_timeout` (a startup option) was refused or dropped.
 */
/**
 * A configuration that does not hold (a plain-text URL to another machine, whitespace around a
 * value, an ENV_FILE that names no file) ends the command as the API's boot ends: its message
 * alone, exit 78 — the CLI had printed it as a load error of this file, with its stack, and exited
 * 1 (configuration review).
 */
function databaseConfig(): ReturnType<typeof loadDatabaseConfig> {
  try {
    loadEnvFile(); // .env in the working directory, if any; the real environment wins
    return loadDatabaseConfig(process.env);
  } catch (err) {
    return commandFailed(err);
  }
}
const database = databaseConfig();

/**
 * The CLI ends a command that failed with exit code 1 and the error printed whole (its stack and
 * every field of pg's error). A server that refuses the sign-in — a password a rotation left stale,
 * a role or database that does not exist, CONNECT revoked (connectionRefusal) — ends it here
 * instead, as it ends the API's and the worker's boot: one line naming the variable, the SQLSTATE
 * and the server's reason, exit code EXIT_CONFIG, so that a deploy's migrate step (and `npm start`)
 * is told apart from an outage and not restarted for ever. A server that does not answer stays the
 * CLI's exit 1: worth another try.
 */
class CliDataSource extends MigratingDataSource {
  /**
   * Outside development and test, a revert is only of the migration named by MIGRATION_REVERT
   * (the newest applied, which it would undo): several down()s drop tables that hold orders,
   * payments or sessions, and `npm run migration:revert` typed for a rollback of the build — which
   * never needs one — ran them with nothing asked (operator review). Refused before anything is
   * undone, naming the migration.
   */
  protected override confirmRevert(migration: string): void {
    if (['development', 'test'].includes(process.env.NODE_ENV ?? '')) return;
    if (process.env.MIGRATION_REVERT !== migration) throw new RevertNotConfirmed(migration);
  }

  /** (refused: its message alone and exit code 2, not the CLI's stack and exit 1) */
  override async undoLastMigration(
    options?: Parameters<MigratingDataSource['undoLastMigration']>[0],
  ): Promise<void> {
    try {
      await super.undoLastMigration(options);
    } catch (err) {
      if (err instanceof RevertNotConfirmed) commandFailed(err);
      throw err;
    }
  }

  override async initialize(): Promise<this> {
    try {
      return await super.initialize();
    } catch (err) {
      const refused = refusedAs(lockUrlVariable(database), err);
      if (refused instanceof ConnectionRefused) commandFailed(refused);
      throw err;
    }
  }
}

export default new CliDataSource(
  dataSourceOptions(database.lockUrl, { withMigrations: true, rootDir: __dirname }),
);
