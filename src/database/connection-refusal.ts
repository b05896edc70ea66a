import { EXIT_CONFIG } from '../config/exit-codes';

/** How a server refused a connection at its start: its SQLSTATE and its own words. */
export interface Refusal {
  sqlState: string;
  reason: string;
}

/** The database variables a process connects with. */
export type DatabaseVariable = 'DATABASE_URL' | 'DATABASE_LOCK_URL';

/** The variable a process's lock sessions connect with: DATABASE_LOCK_URL, unless it is DATABASE_URL's. */
export function lockUrlVariable(database: { url: string; lockUrl: string }): DatabaseVariable {
  return database.lockUrl === database.url ? 'DATABASE_URL' : 'DATABASE_LOCK_URL';
}

/**
 * How many times a boot tries a refused connection before it gives up (DATABASE_URL's own, by
 * TypeOrmModule's retryAttempts, and DATABASE_LOCK_URL's, by SchemaCheck), and how long it waits
 * between two tries.
 */
export const BOOT_CONNECT_ATTEMPTS = 3;
export const BOOT_CONNECT_RETRY_MS = 500;

/** 42501 at a connection's start: CONNECT revoked (its statements' 42501 are their own business). */
const NO_CONNECT_PRIVILEGE = /^permission denied for database\b/;

/**
 * The refusal in `err`, when PostgreSQL answered a connection's start by refusing what the
 * deployment gave it: SQLSTATE class 28 (28000 invalid_authorization_specification: a role that
 * does not exist, no pg_hba.conf entry; 28P01 invalid_password: a rotated password), 3D000
 * invalid_catalog_name (a database that does not exist) or 42501 for the database's CONNECT
 * privilege. Another try gets the same answer: a configuration to fix, not an outage to wait out.
 * Undefined for anything else — a server that did not answer, one starting up (57P03), short of
 * connection slots (53300). Only for an error of the connect itself (a statement answers 42501 for
 * its own reasons). The reason is the server's message, which names the user, role or database,
 * never the password; a URL's credentials are cut all the same, should one ever be in it.
 */
export function connectionRefusal(err: unknown): Refusal | undefined {
  const e = err as { code?: unknown; message?: unknown; severity?: unknown } | null | undefined;
  // (pg's DatabaseError: a server's answer carries its severity)
  if (!e || typeof e.severity !== 'string' || typeof e.code !== 'string') return undefined;
  const reason = typeof e.message === 'string' ? withoutCredentials(e.message) : '';
  const refused =
    e.code.startsWith('28') ||
    e.code === '3D000' ||
    (e.code === '42501' && NO_CONNECT_PRIVILEGE.test(reason));
  return refused ? { sqlState: e.code, reason } : undefined;
}

/** `text` with any URL's user and password replaced by `…`. */
export function withoutCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1…@');
}

/**
 * A database that refuses this process's connection at boot (connectionRefusal): the boot stops,
 * exit code EXIT_CONFIG, naming the variable, the SQLSTATE and the server's reason — never the
 * URL or its password.
 */
export class ConnectionRefused extends Error {
  readonly exitCode = EXIT_CONFIG;

  constructor(
    readonly variable: DatabaseVariable,
    readonly refusal: Refusal,
  ) {
    super(
      `${variable}: the database refused the connection (SQLSTATE ${refusal.sqlState}: ${refusal.reason}). ` +
        `Give ${variable} the user, password and database the server has (after a password rotation: the new password), or grant that user CONNECT on the database`,
    );
  }
}

/** `err` as ConnectionRefused for `variable` when it is a refusal (connectionRefusal), else as it is. */
export function refusedAs(variable: DatabaseVariable, err: unknown): unknown {
  const refusal = connectionRefusal(err);
  return refusal ? new ConnectionRefused(variable, refusal) : err;
}
