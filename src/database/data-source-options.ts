import { join } from 'node:path';
import type { DataSourceOptions } from 'typeorm';
import { Client } from 'pg';
import { connectBoundedClient, isDroppedIdle, stallAwareClient } from './stall-aware-client';
import { SafeTypeOrmLogger } from './typeorm-logger';

/**
 * How long the server lets a pool connection sit inside a transaction with nothing to do before
 * it ends the session (and its row locks). No request holds a transaction open this long; a
 * process that froze, or a host that vanished without FIN/RST, would otherwise keep its locks on
 * hot rows for as long as the TCP connection lives (two hours by the OS defaults).
 */
const IDLE_IN_TRANSACTION_MS = 15_000;

/**
 * The silence a statement marked LONG_RUNNING is allowed (at least; DATABASE_QUERY_TIMEOUT_MS if
 * longer): the recommendations' recomputation over every paid order can be silent for minutes on
 * a large shop. Every other statement has DATABASE_QUERY_TIMEOUT_MS.
 */
const LONG_RUNNING_SILENCE_MS = 10 * 60_000;

/**
 * How long opening a pool connection (TCP connect, TLS, sign-in) may take before it fails — a
 * connection failure (503, counted by the circuit breaker). Not how long a request waits for a
 * connection another request is using: that is `poolWaitMs` (DATABASE_POOL_WAIT_MS).
 */
const CONNECT_TIMEOUT_MS = 5000;

/** How long a migration waits for a table lock before it fails (and rolls back): run it again later. */
export const MIGRATION_LOCK_TIMEOUT_MS = 5_000;

/**
 * How long a statement of the app's pools waits for a lock (a row, a table, an advisory lock)
 * before the server ends it (lock_timeout: 55P03, a 503 to retry; not counted by the circuit
 * breaker). Every lock the app takes is held for milliseconds — a sale's stock row is locked by
 * the statement sent with COMMIT — so a longer wait means a holder outside the request path: an
 * operator's open transaction, a migration's table lock, a stuck statement. Waiting on it held a
 * pool connection per waiter until the pool's queue turned every route of the instance into 503s
 * (DATABASE_POOL_WAIT_MS, 8 s), and then until the statement's silence limit (60 s), when it was
 * counted as an outage (dbpressure review). The server times each wait: a statement queued
 * behind another waiter for the same row waits anew, as long again at most, once the one ahead
 * gives up. Below the pool's default wait; migrations have their
 * own (MIGRATION_LOCK_TIMEOUT_MS), the lock sessions take their locks with try-locks.
 */
export const LOCK_WAIT_MS = 5_000;

/** The server's own TCP keepalive probes: a vanished client is noticed in about 25 s. */
export const SERVER_KEEPALIVES =
  '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3';

/**
 * The switch of migrations/1763800055000-OrderStatusTransitions.ts, off on every connection of the
 * app's pools and the migration CLI.
 */
const NO_ORDER_STATUS_REPAIR = '-c shop.order_status_repair=off';

/** Connection parameters the app sets itself, which a connection URL must not replace. */
const APP_SET_PARAMETERS = ['options', 'application_name'];

/**
 * A connection URL split into what node-postgres may take from it and the URL's own `options`
 * (`-c search_path=…`, a provider's `endpoint=…`), to be sent after the app's. node-postgres lets a
 * URL's parameters replace the config's: a DATABASE_URL with `?options=` dropped the app's server-side
 * settings (idle_in_transaction_session_timeout, the keepalives, a migration's lock_timeout), one
 * with `?application_name=` the lock sessions' unique names (which a new session matches to end a
 * dropped one's backend). The URL's application_name is dropped; its options come after the
 * app's, so the same setting given there wins and any other is added.
 */
export function connectionSettings(url: string, appOptions = ''): { url: string; options: string } {
  const at = url.indexOf('?');
  if (at === -1) return { url, options: appOptions };
  const query = new URLSearchParams(url.slice(at + 1));
  const own = query.get('options') ?? '';
  if (!APP_SET_PARAMETERS.some((name) => query.has(name))) return { url, options: appOptions };
  for (const name of APP_SET_PARAMETERS) query.delete(name);
  const rest = query.toString();
  return {
    url: rest ? `${url.slice(0, at)}?${rest}` : url.slice(0, at),
    options: [appOptions, own].filter(Boolean).join(' '),
  };
}

/** The migrations folder of the build (src's parent, or dist's in a build), or under `root`. */
export function migrationsFolder(root = join(__dirname, '..', '..')): string {
  return join(root, 'migrations');
}

/**
 * The one description of the PostgreSQL connection, shared by the app (TypeOrmModule),
 * the migration CLI (ormconfig.ts) and the test harness.
 */
export function dataSourceOptions(
  url: string,
  opts: {
    poolSize?: number;
    /**
     * How long a caller waits for a free connection while every one is in use (default: the
     * connect timeout). A sale's queue in front of a database that answers is not an outage.
     */
    poolWaitMs?: number;
    withMigrations?: boolean;
    rootDir?: string;
    idleInTransactionMs?: number;
    /** A statement the server sends nothing back for this long fails, its connection dropped. */
    queryTimeoutMs?: number;
  } = {},
): DataSourceOptions {
  const root = opts.rootDir ?? join(__dirname, '..', '..');
  const logger = new SafeTypeOrmLogger();
  const poolWaitMs = opts.poolWaitMs ?? CONNECT_TIMEOUT_MS;
  const connection = connectionSettings(
    url,
    `-c idle_in_transaction_session_timeout=${opts.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS} ${SERVER_KEEPALIVES}` +
      // a migration that cannot have its lock at once (a long reader, a pg_dump) gives up after
      // MIGRATION_LOCK_TIMEOUT instead of queueing every request on that table behind it; the
      // app's statements after LOCK_WAIT_MS
      ` -c lock_timeout=${opts.withMigrations ? MIGRATION_LOCK_TIMEOUT_MS : LOCK_WAIT_MS}`,
  );
  return {
    type: 'postgres',
    url: connection.url,
    synchronize: false,
    migrationsRun: false,
    migrationsTableName: 'schema_migrations',
    entities: [join(root, 'src', '**', '*.entity.{ts,js}')],
    migrations: opts.withMigrations ? [join(migrationsFolder(root), '*.{ts,js}')] : [],
    // each migration commits on its own: one run's locks (an index build on orders, a constraint on
    // users) are held for that migration, not until the last of the batch commits
    migrationsTransactionMode: 'each',
    extra: {
      // the pool's clients (pg-pool's `Client` option): see stallAwareClient and connectBoundedClient
      Client: connectBoundedClient(
        opts.queryTimeoutMs
          ? stallAwareClient(
              opts.queryTimeoutMs,
              Math.max(opts.queryTimeoutMs, LONG_RUNNING_SILENCE_MS),
            )
          : Client,
        Math.min(CONNECT_TIMEOUT_MS, poolWaitMs),
      ),
      max: opts.poolSize ?? 20,
      // pg-pool's one timeout: for the wait in its queue, and for a connect it opens (which the
      // client's own connect timeout above ends first when the wait is the longer)
      connectionTimeoutMillis: poolWaitMs,
      idleTimeoutMillis: 30_000,
      application_name: 'shop-orders',
      // the client's side: a server that vanished is noticed on idle pool connections too
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // last, so the URL's options cannot turn it on (the orders' transition trigger lets any
      // status through in a transaction that sets it; a repair says so with SET LOCAL, which
      // still wins within its own transaction). The app's role cannot give itself a default for
      // it; one a superuser set makes PostgreSQL refuse this option, so the connection fails
      // rather than run with the trigger off.
      options: `${connection.options} ${NO_ORDER_STATUS_REPAIR}`,
    },
    // TypeORM's own handler (an 'error' of the pool must have a listener), but without a line for
    // each idle connection dropped after another's silence: that give-up says how many, once
    poolErrorHandler: (err: unknown) => {
      if (!isDroppedIdle(err)) logger.log('warn', `Postgres pool raised an error. ${String(err)}`);
    },
    // failed queries by SQLSTATE and statement head only, never with their parameters
    logger,
    logging: ['error', 'warn', 'migration'],
  };
}
