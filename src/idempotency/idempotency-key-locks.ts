import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Client } from 'pg';
import { APP_CONFIG, AppConfig } from '../config/config';
import { KEY_LOCK_ID } from './idempotency.repository';

/** A key held by a request of this process; `release()` never throws. */
export interface KeyHold {
  release(): Promise<void>;
}

/** A statement on the lock session that hangs longer than this ends the session. */
const SESSION_QUERY_TIMEOUT_MS = 5_000;

/**
 * "A request with this key is running", for requests outside one transaction (the routes that
 * call a payment provider): a session-level advisory lock on (principal, key) — the same lock the
 * transactional claim takes for its transaction — held on one dedicated connection per process
 * (not a pooled one: a lock held across the handler must not cost a pool slot per request).
 * The lock dies with what holds it: released when the request ends, and by PostgreSQL itself
 * when the process dies or the database restarts (the session ends). A twin that finds a key's
 * `in_progress` record but can take its lock knows the holder is gone and takes over at once.
 *
 * The session needs a direct connection to PostgreSQL (session locks do not survive a
 * transaction-pooling PgBouncer). Two requests of this process with one key are told apart here
 * (a session's advisory locks are re-entrant).
 */
@Injectable()
export class IdempotencyKeyLocks implements OnApplicationShutdown {
  private readonly logger = new Logger(IdempotencyKeyLocks.name);
  private session?: Client;
  private connecting?: Promise<Client>;
  /** Keys held by this process's requests. */
  private readonly held = new Set<string>();
  private closed = false;
  /** The session's statements, one at a time (a pg client runs one query at a time). */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /**
   * Takes the key without waiting: a hold, or null while another request (of any process, in
   * either claim mode) has it. Throws when the database cannot be reached.
   */
  async tryHold(principal: string, key: string): Promise<KeyHold | null> {
    const name = `${principal}\n${key}`;
    if (this.held.has(name)) return null;
    this.held.add(name);
    let session: Client | undefined;
    for (let attempt = 1; ; attempt++) {
      session = undefined;
      try {
        session = await this.connect();
        const rows = await this.run<{ held: boolean }>(session, `SELECT pg_try_advisory_lock(${KEY_LOCK_ID}) AS held`, [
          principal,
          key,
        ]);
        if (rows[0]?.held) break;
        this.held.delete(name);
        return null;
      } catch (err) {
        // a session that failed (or hung past the timeout) is replaced; one that died unnoticed
        // (the server restarted while it sat idle) is retried once on a fresh one
        if (session) this.drop(session);
        if (!session || attempt >= 2) {
          this.held.delete(name);
          throw err;
        }
      }
    }
    const locked = session;
    return {
      release: async () => {
        try {
          // a session that died took the lock with it
          if (this.session === locked) {
            await this.run(locked, `SELECT pg_advisory_unlock(${KEY_LOCK_ID})`, [principal, key]);
          }
        } catch (err) {
          this.logger.warn(`could not release an idempotency key (${(err as Error).message}); ending the lock session`);
          this.drop(locked);
        } finally {
          this.held.delete(name);
        }
      },
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    const session = this.session;
    this.session = undefined;
    await session?.end().catch(() => undefined);
  }

  private run<R extends Record<string, unknown>>(session: Client, sql: string, params: unknown[]): Promise<R[]> {
    const result = this.tail.then(() => session.query<R>(sql, params)).then((r) => r.rows);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private connect(): Promise<Client> {
    if (this.session) return Promise.resolve(this.session);
    if (this.closed) return Promise.reject(new Error('the idempotency lock session is closed'));
    this.connecting ??= (async () => {
      const session = new Client({
        connectionString: this.config.database.url,
        application_name: 'shop-orders-key-locks',
        connectionTimeoutMillis: 5_000,
        query_timeout: SESSION_QUERY_TIMEOUT_MS,
        keepAlive: true,
      });
      // the server going away (restart, terminated backend) ends the session and its locks
      session.on('error', (err) => {
        this.logger.warn(`idempotency lock session lost: ${err.message}`);
        this.drop(session);
      });
      session.on('end', () => this.drop(session));
      try {
        await session.connect();
      } catch (err) {
        await session.end().catch(() => undefined);
        throw err;
      }
      if (this.closed) {
        await session.end().catch(() => undefined);
        throw new Error('the idempotency lock session is closed');
      }
      this.session = session;
      return session;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Forgets a session (its locks are gone, or must be): the next hold opens a new one. */
  private drop(session: Client): void {
    if (this.session === session) this.session = undefined;
    void session.end().catch(() => undefined);
  }
}
