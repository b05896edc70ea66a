import { setTimeout as delay } from 'node:timers/promises';
import { DataSource, MigrationExecutor, QueryFailedError } from 'typeorm';
import type { Migration, MigrationInterface, QueryRunner } from 'typeorm';
import { databaseErrorSummary } from '../common/errors/database-errors';
import { MIGRATION_LOCK_TIMEOUT_MS } from './data-source-options';
import { databaseEncoding, encodingRefusal } from './database-encoding';

/** Session advisory lock key of a migration run ('MIGR'). */
export const MIGRATION_LOCK = 0x4d494752;

/**
 * A migration run's database error as a deploy log may show it: the migration, the SQLSTATE, the
 * constraint, table and column, and PostgreSQL's message — never its DETAIL ("Failing row contains
 * (…)": a customer's email, a password hash), the statement or its parameters. The TypeORM CLI
 * prints the error a run throws whole (`console.error`, every field of a QueryFailedError): a
 * migration that failed on a row put that row in the deploy log.
 */
export class MigrationRunFailed extends Error {
  readonly sqlState: string;
  declare readonly constraint?: string;
  declare readonly table?: string;
  declare readonly column?: string;

  constructor(
    readonly migration: string | undefined,
    fields: { sqlState: string; constraint?: string; table?: string; column?: string },
    serverMessage: string,
    stack: string | undefined,
  ) {
    const names = (['constraint', 'table', 'column'] as const)
      .filter((key) => fields[key])
      .map((key) => `${key} ${fields[key]}`);
    super(
      `${migration ? `Migration ${migration}` : 'The migration run'} failed: SQLSTATE ${fields.sqlState}` +
        `${names.length > 0 ? ` (${names.join(', ')})` : ''}: ${serverMessage}`,
    );
    Object.defineProperty(this, 'name', { value: 'MigrationRunFailed', enumerable: false });
    this.sqlState = fields.sqlState;
    if (fields.constraint) this.constraint = fields.constraint;
    if (fields.table) this.table = fields.table;
    if (fields.column) this.column = fields.column;
    // where it was thrown (the frames only: the original's first line is its whole message)
    const frames = stack?.split('\n').filter((line) => /^\s+at /.test(line)) ?? [];
    this.stack = [`${this.name}: ${this.message}`, ...frames].join('\n');
  }
}

/**
 * `err` as MigrationRunFailed when it is a database error (of `migration`, when known); anything
 * else as it is (it carries no row: the migrations' own code and TypeORM's checks threw it).
 */
function safeFailure(err: unknown, migration?: string): unknown {
  if (err instanceof MigrationRunFailed) return err;
  const summary = databaseErrorSummary(err);
  if (!summary) return err;
  const driver = err instanceof QueryFailedError ? (err.driverError as unknown) : err;
  const message = (driver as { message?: unknown }).message;
  return new MigrationRunFailed(
    migration,
    summary,
    // a data exception's message quotes the value that failed (`invalid input syntax for type
    // uuid: "<a customer's email>"`): its SQLSTATE and names say what failed, not the row
    typeof message !== 'string'
      ? ''
      : summary.sqlState.startsWith(VALUE_QUOTING_CLASS)
        ? withoutQuotedValues(message)
        : message,
    err instanceof Error ? err.stack : undefined,
  );
}

/** SQLSTATE class 22, data exception: the server's message quotes the offending value. */
const VALUE_QUOTING_CLASS = '22';

/**
 * A data exception's message without the value it quotes: `invalid input syntax for type uuid:
 * "<a customer's email>"` → `invalid input syntax for type uuid: "…"` — what failed stays.
 */
function withoutQuotedValues(message: string): string {
  return message.replace(/"(?:[^"]|"")*"?/g, '"…"');
}

/** A migration whose database errors come out as MigrationRunFailed, naming it. */
function failingSafely(name: string, migration: MigrationInterface): MigrationInterface {
  return {
    name: migration.name,
    transaction: migration.transaction,
    up: (q) =>
      migration.up(q).catch((err: unknown) => {
        throw safeFailure(err, name);
      }),
    down: (q) =>
      migration.down(q).catch((err: unknown) => {
        throw safeFailure(err, name);
      }),
  };
}

/**
 * Refuses a revert that was not asked for by name: what `MIGRATION_REVERT` must say outside
 * development and test (`migration:revert` through ormconfig.ts).
 */
export class RevertNotConfirmed extends Error {
  /** A usage error, as the other commands' (not a failure worth another try as it is). */
  readonly exitCode = 2;

  constructor(readonly migration: string) {
    super(
      `migration:revert would revert ${migration}, whose down() may drop columns or tables and ` +
        'the data in them. Going back to the previous build does not need it (README, Operations). ' +
        `To revert it all the same, run the command again with MIGRATION_REVERT=${migration}. ` +
        'Nothing was reverted.',
    );
    this.name = 'RevertNotConfirmed';
  }
}

/** TypeORM's executor, running each migration through failingSafely. */
class SafeMigrationExecutor extends MigrationExecutor {
  /** Told the migration a revert is about to undo, before anything is undone; throws to refuse. */
  beforeRevert?: (migration: string) => void;

  /** (TypeORM's undoLastMigration asks this alone which migration it reverts) */
  protected override getLatestExecutedMigration(sorted: Migration[]): Migration | undefined {
    const latest = super.getLatestExecutedMigration(sorted);
    if (latest) this.beforeRevert?.(latest.name);
    return latest;
  }

  protected override getMigrations(): Migration[] {
    return super.getMigrations().map((migration) => {
      if (migration.instance)
        migration.instance = failingSafely(migration.name, migration.instance);
      return migration;
    });
  }
}

/**
 * Who holds the migration lock, in one line: its backend's pid, application_name and how long its
 * transaction has been running — a killed deploy's statement still running on the server, or
 * another deploy's run. (Another role's session shows its pid and application_name only.)
 */
async function whoHoldsTheLock(session: QueryRunner): Promise<string> {
  const holders = (await session.query(
    `SELECT l.pid, a.application_name, a.state,
            extract(epoch FROM now() - a.xact_start)::bigint AS xact_seconds,
            extract(epoch FROM now() - a.state_change)::bigint AS state_seconds
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = 0 AND l.objid = $1::bigint::oid AND l.objsubid = 1`,
    [MIGRATION_LOCK],
  )) as {
    pid: number;
    application_name: string | null;
    state: string | null;
    xact_seconds: string | null;
    state_seconds: string | null;
  }[];
  const [holder] = holders;
  const waiting =
    'waiting for it (another deploy running its migrations, or a killed one whose statement still runs on the server)';
  if (!holder)
    return `The migration lock is held by another session (released just now): ${waiting}`;
  const transaction =
    holder.xact_seconds !== null
      ? `its transaction running for ${holder.xact_seconds} s`
      : holder.state_seconds !== null
        ? `no transaction open, ${holder.state ?? 'idle'} for ${holder.state_seconds} s`
        : "its transaction's age not visible to this role";
  return `The migration lock is held by pid ${holder.pid} (application_name "${holder.application_name ?? ''}", ${transaction}): ${waiting}`;
}

/** How often a run waiting for the migration lock asks for it again. */
const MIGRATION_TURN_POLL_MS = 250;

/** Takes the migration lock if it is free (a session lock: held until released or the session ends). */
async function takeTurn(lock: QueryRunner): Promise<boolean> {
  const [turn] = (await lock.query('SELECT pg_try_advisory_lock($1) AS taken', [
    MIGRATION_LOCK,
  ])) as { taken: boolean }[];
  return turn.taken;
}

/**
 * The DataSource the migration commands use (ormconfig.ts): runs (and reverts) migrations one after
 * the other under a session advisory lock, so two runs at once (two hosts' `npm start`, an overlapping
 * `docker compose run migrate`) take turns — the second finds the first's work recorded and has
 * nothing left to do — instead of both applying the same pending list (the second failing on
 * "already exists", or recording a data migration twice). A run that finds the lock taken says
 * once, at warn, who holds it (whoHoldsTheLock), then waits for its turn.
 *
 * The migrations run on the session that holds the lock, with their `lock_timeout` set on it by a
 * statement: the startup option that also sets it (dataSourceOptions) is dropped by a session-mode
 * PgBouncer told to ignore `options` (docs/SCALING.md), and a migration would then wait for a
 * table's lock for as long as a reader held it, every request on that table queued behind it.
 *
 * A database not in UTF8 is refused before the first migration (database-encoding.ts).
 * A database error of the run comes out as MigrationRunFailed: what the CLI prints of it holds no
 * row, statement or parameter.
 */
export class MigratingDataSource extends DataSource {
  override runMigrations(
    options?: Parameters<DataSource['runMigrations']>[0],
  ): Promise<Migration[]> {
    return this.inTurn(async (runner) => {
      // before the first migration: a database in another encoding passed the early ones, then
      // failed half migrated with the server's raw errors
      const refusal = encodingRefusal(await databaseEncoding((sql) => runner.query(sql)));
      if (refusal) throw new Error(`${refusal}. Nothing was migrated.`);
      const executor = new SafeMigrationExecutor(this, runner);
      // (DataSource.runMigrations' own defaults)
      executor.transaction =
        options?.transaction || this.options.migrationsTransactionMode || 'all';
      executor.fake = options?.fake ?? false;
      return executor.executePendingMigrations();
    });
  }

  /**
   * Whether a revert of `migration` may go ahead: none is refused here (the CLI's data source
   * asks for it by name outside development: ormconfig.ts). Throws to refuse it.
   */
  protected confirmRevert(_migration: string): void {}

  /** A revert takes its turn too (it would undo the migration a run is just applying on top of). */
  override undoLastMigration(
    options?: Parameters<DataSource['undoLastMigration']>[0],
  ): Promise<void> {
    return this.inTurn((runner) => {
      const executor = new SafeMigrationExecutor(this, runner);
      executor.beforeRevert = (migration) => this.confirmRevert(migration);
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
      if (!(await takeTurn(lock))) {
        // said once, then waited for as before: a silent wait looked like a hung deploy
        this.logger.log(
          'warn',
          await whoHoldsTheLock(lock).catch(
            () => 'The migration lock is held by another session: waiting for it',
          ),
        );
        // asked again and again, not waited for in one blocking pg_advisory_lock: a statement
        // waiting holds a snapshot, and a migration building an index CONCURRENTLY waits for
        // every older snapshot to end — the two runs deadlocked, and the waiting one failed
        // (40P01: two hosts' `npm start` at once, migration IdempotencyAbandonedIndex)
        while (!(await takeTurn(lock))) await delay(MIGRATION_TURN_POLL_MS);
      }
      await lock.query(`SET lock_timeout = ${MIGRATION_LOCK_TIMEOUT_MS}`);
      return await work(lock);
    } catch (err) {
      throw safeFailure(err);
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await lock.query('RESET lock_timeout').catch(() => undefined);
      await lock.release();
    }
  }
}
