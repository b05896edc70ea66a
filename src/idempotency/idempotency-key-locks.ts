import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { AdvisoryLockSession, SessionLockHold } from '../database/advisory-lock-session';
import { lockUrlVariable } from '../database/connection-refusal';
import { DbCircuitBreaker } from '../database/db-circuit-breaker';
import { KEY_LOCK_ID } from './idempotency.repository';

/** A key held by a request of this process; `release()` never throws. */
export type KeyHold = SessionLockHold;

/**
 * "A request with this key is running", for requests outside one transaction (the routes that
 * call a payment provider): a session-level advisory lock on (principal, key) — the same lock the
 * transactional claim takes for its transaction — held on the process's key-lock session
 * (AdvisoryLockSession, `application_name = shop-orders-key-locks/<8 hex>`). The lock dies with what
 * holds it: released when the request ends, and by PostgreSQL itself when the process dies or
 * the database restarts (the session ends). A twin that finds a key's `in_progress` record but
 * can take its lock knows the holder is gone and takes over at once. Should the session end while
 * its requests still run (its connection cut, its backend terminated), their keys are taken again
 * on a new session at once (`retakeLostHolds`); only a twin arriving in that gap can take one over,
 * and the record's token then fences the first request's `finish`.
 *
 * The session needs a direct connection to PostgreSQL (session locks do not survive a
 * transaction-pooling PgBouncer). Two requests of this process with one key are told apart by
 * the session (a session's advisory locks are re-entrant).
 */
/** A key-lock session silent this long is ended by the server (its holder frozen): see below. */
const KEY_LOCK_IDLE_SESSION_MS = 10_000;

@Injectable()
export class IdempotencyKeyLocks implements OnApplicationShutdown {
  private readonly session: AdvisoryLockSession;
  /** DATABASE_LOCK_URL names another endpoint than the pools' (a session-mode pooler, say). */
  private readonly separateEndpoint: boolean;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly breaker: DbCircuitBreaker,
  ) {
    this.separateEndpoint = config.database.lockUrl !== config.database.url;
    // a key must stay taken while its request runs, even across a cut of the lock's connection
    this.session = new AdvisoryLockSession(config.database.lockUrl, {
      urlVariable: lockUrlVariable(config.database),
      applicationName: 'shop-orders-key-locks',
      retakeLostHolds: true,
      // a process frozen while it holds keys (SIGSTOP, a paused container, a hung event loop)
      // keeps its session — its host's kernel still answers keepalives — and every retry of those
      // keys was 409 IDEMPOTENCY_KEY_IN_USE for as long as it stayed frozen: ended after this idle
      // time (a live one's heartbeat keeps it). The frozen request's late finish is fenced by its
      // record's token; its provider call is idempotent at the provider (one intent per order, one
      // refund per key attempt)
      idleSessionTimeoutMs: KEY_LOCK_IDLE_SESSION_MS,
      // an endpoint of its own fails fast after a connect that timed out; one shared with the
      // pools has the database circuit breaker for that
      failFastMs: this.separateEndpoint ? config.database.breaker.halfOpenAfterMs : 0,
    });
  }

  /**
   * Takes the key without waiting: a hold, or null while another request (of any process, in
   * either claim mode) has it. Through the database circuit breaker, like every other use of
   * the database: while it is unreachable, 503 SERVICE_UNAVAILABLE with Retry-After (failing fast
   * once the breaker is open), and its connection failures count towards opening it — unless the
   * lock session connects elsewhere (DATABASE_LOCK_URL): then its failures are that endpoint's,
   * answered 503 without opening the breaker every route goes through.
   */
  tryHold(principal: string, key: string): Promise<KeyHold | null> {
    const hold = () => this.session.tryHold(`${principal}\n${key}`, KEY_LOCK_ID, [principal, key]);
    // (a key this process holds already is refused with no round trip: no answer from the database)
    return this.separateEndpoint ? this.breaker.uncounted(hold) : this.breaker.execute(hold, false);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.session.close();
  }
}
