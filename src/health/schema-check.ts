import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { readdirSync } from 'node:fs';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { withTimeout } from '../common/with-timeout';
import { APP_CONFIG, AppConfig } from '../config/config';
import { EXIT_CONFIG } from '../config/exit-codes';
import { databaseIdentityParts } from '../redis/key-prefix-claim';
import { connectionSettings, migrationsFolder } from '../database/data-source-options';
import { databaseEncoding, encodingRefusal } from '../database/database-encoding';
import { pgErrorCode } from '../database/transaction-host';
import {
  BOOT_CONNECT_ATTEMPTS,
  BOOT_CONNECT_RETRY_MS,
  ConnectionRefused,
  refusedAs,
  withoutCredentials,
} from '../database/connection-refusal';
import { sqlStateOf } from '../common/errors/database-errors';

/** How long a boot waits for either answer before it goes on without it (no refusal). */
const CHECK_TIMEOUT_MS = 5_000;

/** A database this build cannot run on, refused at boot (exit code EXIT_CONFIG). */
export class DatabaseMismatch extends Error {
  readonly exitCode = EXIT_CONFIG;
}

/**
 * The newest migration this build carries: the largest timestamp of `<dir>/<timestamp>-<name>`
 * (.ts, or .js in a build); null when it carries none (a build shipped without its migrations).
 */
export function newestMigrationOf(dir: string): number | null {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  const stamps = names
    .filter((n) => /^\d+-.+\.(ts|js)$/.test(n) && !n.endsWith('.d.ts'))
    .map((n) => Number(n.slice(0, n.indexOf('-'))));
  return stamps.length > 0 ? Math.max(...stamps) : null;
}

/**
 * What a process checks of its database before it serves or works (API, worker, and the commands
 * that boot the application):
 *
 * - **The database is UTF8** (database-encoding.ts): the migrations refuse any other encoding
 *   too, and the schema's NFC and ICU comparisons need it. Checked first: on such a database the
 *   schema is behind as well, and running the migrations is not the way out.
 * - **The schema is not behind this build.** The newest migration recorded (`schema_migrations`)
 *   must be at least the newest this build carries. A build started before `npm run
 *   migration:run` (a deploy in the wrong order, a migration that failed) booted, its readiness
 *   said 200, and every route touching a new table or column answered 500 (operator review). A
 *   database ahead of the build is fine: the previous build keeps serving during a rolling deploy.
 * - **`DATABASE_LOCK_URL` reaches the same database as `DATABASE_URL`.** The migrations run over
 *   the lock URL (ormconfig.ts), and the key locks and readiness's side probe use it: pointed at
 *   another database, `migration:run` migrated that one and exited 0, and the API on the
 *   unmigrated one reported ready (operator review). Compared by the database's oid and name,
 *   and by the cluster's system identifier where both roles may read it, else by the server's
 *   start (sameDatabase), all of which a transaction pooler passes through.
 *
 * Either refuses the boot (DatabaseMismatch, exit code EXIT_CONFIG) naming what to do; so does a
 * lock URL whose server refuses the connection (ConnectionRefused: its password, role or database,
 * as DATABASE_URL's would be refused by the pool's connect). A database that does not answer at
 * boot is no refusal: the process boots as it would without the check (its breaker and readiness
 * deal with it), and says so at warn — as it does when one answers the check with another error.
 */
@Injectable()
export class SchemaCheck implements OnApplicationBootstrap {
  private readonly logger = new Logger(SchemaCheck.name);
  /** The build's migrations folder (dataSourceOptions' own). */
  private readonly migrationsDir = migrationsFolder();

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    // (a database that does not answer this is not asked the schema: one wait, one warning)
    if (await this.checkEncoding()) await this.checkSchema();
    await this.checkLockRoute();
  }

  /** Whether the database answered. */
  private async checkEncoding(): Promise<boolean> {
    let database: { name: string; encoding: string };
    try {
      database = await withTimeout(
        databaseEncoding((sql) => this.dataSource.query(sql)),
        CHECK_TIMEOUT_MS,
      );
    } catch (err) {
      this.unchecked('its encoding and schema', err);
      return false;
    }
    const refusal = encodingRefusal(database);
    if (refusal) throw new DatabaseMismatch(refusal);
    return true;
  }

  private async checkSchema(): Promise<void> {
    const carried = newestMigrationOf(this.migrationsDir);
    if (carried === null) {
      this.logger.warn(
        `no migrations found in ${this.migrationsDir}: whether the database's schema is behind this build is not checked`,
      );
      return;
    }
    let recorded: number | null;
    try {
      const [row] = await withTimeout(
        this.dataSource.query<{ newest: string | null }[]>(
          `SELECT max("timestamp")::text AS newest FROM schema_migrations`,
        ),
        CHECK_TIMEOUT_MS,
      );
      recorded = row?.newest ? Number(row.newest) : null;
    } catch (err) {
      // undefined_table: never migrated
      if (pgErrorCode(err) !== '42P01') return this.unchecked('its schema', err);
      recorded = null;
    }
    if (recorded === null || recorded < carried) {
      throw new DatabaseMismatch(
        `The database's schema is behind this build (its newest migration ${recorded ?? 'none'}, this build's ${carried}): run the migrations first (npm run migration:run, or migration:run:dist for a build), then start it`,
      );
    }
  }

  private async checkLockRoute(): Promise<void> {
    const { url, lockUrl } = this.config.database;
    if (lockUrl === url) return;
    let own: IdentityParts;
    let overLock: IdentityParts;
    try {
      own = await withTimeout(identityOf(this.dataSource), CHECK_TIMEOUT_MS);
      overLock = await this.identityOverLockUrl(lockUrl);
    } catch (err) {
      if (err instanceof ConnectionRefused) throw err;
      return this.unchecked('DATABASE_LOCK_URL', err);
    }
    if (!sameDatabase(own, overLock)) {
      throw new DatabaseMismatch(
        `DATABASE_LOCK_URL reaches another database (${overLock.name}) than DATABASE_URL (${own.name}): the migrations run over it, and the key locks and readiness use it. Point it at the same database (directly or through a session-mode pooler), or leave it unset`,
      );
    }
  }

  /**
   * identityOver the lock URL; a server that refuses its connection (ConnectionRefused: a stale
   * password, a role or database that does not exist) is asked BOOT_CONNECT_ATTEMPTS times, as
   * DATABASE_URL's pool is, then refuses the boot. It was taken for a database that did not
   * answer: the boot went on, readiness said 200, and every keyed payment, refund and email
   * delivery answered 503 or failed for want of its lock, with no cause in the log.
   */
  private async identityOverLockUrl(lockUrl: string): Promise<IdentityParts> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withTimeout(identityOver(lockUrl), CHECK_TIMEOUT_MS);
      } catch (err) {
        if (!(err instanceof ConnectionRefused) || attempt >= BOOT_CONNECT_ATTEMPTS) throw err;
        await new Promise((resolve) => setTimeout(resolve, BOOT_CONNECT_RETRY_MS));
      }
    }
  }

  /** A check not made: the database did not answer, or answered it with an error (its SQLSTATE). */
  private unchecked(what: string, err: unknown): void {
    const message = withoutCredentials(err instanceof Error ? err.message : String(err));
    const sqlState = sqlStateOf(err);
    this.logger.warn(
      `${what} not checked at boot: ${
        sqlState
          ? `the database answered with an error (SQLSTATE ${sqlState}: ${message})`
          : `the database did not answer (${message})`
      }`,
    );
  }
}

type IdentityParts = Awaited<ReturnType<typeof databaseIdentityParts>> & {
  /** When the server last started (pg_postmaster_start_time(): anyone may read it). */
  started: string;
};

/**
 * databaseIdentityParts, with when its server started: two clusters made by the same script give
 * their first database the same oid and name, and where a role may not read the system identifier
 * the start tells them apart (one server, one start, however it is reached).
 */
async function identityOf(dataSource: Pick<DataSource, 'query'>): Promise<IdentityParts> {
  const parts = await databaseIdentityParts(dataSource);
  const [row] = await dataSource.query<{ started: string }[]>(
    // as a number (microseconds since the epoch): as text it follows each session's TimeZone and
    // DateStyle, and one server read by two roles set otherwise looked like two (diff review 3)
    `SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1e6)::bigint::text AS started`,
  );
  return { ...parts, started: row.started };
}

/**
 * Whether two identities are one database: its oid and name, and the cluster's system identifier
 * where both roles may read it — else its server's start (a managed service may grant
 * pg_control_system() to the owner's role a lock URL signs in with, and not to the app's).
 */
export function sameDatabase(a: IdentityParts, b: IdentityParts): boolean {
  if (a.oid !== b.oid || a.name !== b.name) return false;
  // the identifier, where both may read it, says it all; the start only stands in for it
  return a.system !== null && b.system !== null ? a.system === b.system : a.started === b.started;
}

/**
 * identityOf over a connection of its own to `url` (DATABASE_LOCK_URL), closed after; a refused
 * connect throws ConnectionRefused.
 */
async function identityOver(url: string): Promise<IdentityParts> {
  const settings = connectionSettings(url);
  const client = new Client({
    connectionString: settings.url,
    options: settings.options || undefined,
    connectionTimeoutMillis: CHECK_TIMEOUT_MS,
    application_name: 'shop-orders/schema-check',
  });
  client.on('error', () => undefined); // (a failure is the query's)
  try {
    await client.connect().catch((err: unknown) => {
      throw refusedAs('DATABASE_LOCK_URL', err);
    });
    return await identityOf({
      query: async (sql: string) => (await client.query(sql)).rows as unknown[],
    } as Pick<DataSource, 'query'>);
  } finally {
    await client.end().catch(() => undefined);
  }
}
