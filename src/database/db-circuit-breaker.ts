import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  BrokenCircuitError,
  CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  IBackoff,
  IHalfOpenAfterBackoffContext,
  IsolatedCircuitError,
  circuitBreaker,
  handleWhen,
} from 'cockatiel';
import { DataSource, QueryFailedError, QueryRunnerAlreadyReleasedError } from 'typeorm';
import { DomainError } from '../common/errors/domain-error';
import { isDraining } from '../common/shutdown';
import { APP_CONFIG, AppConfig } from '../config/config';
import { withoutCredentials } from './connection-refusal';
import { SideConnection } from './side-connection';

export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated';

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'isolated',
};

/**
 * The first wait before a half-open probe: each probe that fails doubles it, up to
 * DB_BREAKER_HALF_OPEN_MS. A fixed wait of that length made a 300 ms outage 5.2 s of 503s for
 * every request (the breaker opened, and waited 5 s whatever came back); a long outage is still
 * probed once every DB_BREAKER_HALF_OPEN_MS after its first seconds.
 */
const FIRST_HALF_OPEN_MS = 1000;
/**
 * A breaker that opens again within this long of closing goes on from the double of its last
 * wait, not from the first: a database that answers the probe and falls over again under the
 * returning load (a crash loop, one overloaded by the reconnects) was probed every second.
 */
const WAITS_REMEMBERED_MS = 30_000;

/**
 * The half-open waits of one outage: each the double of the one before, up to `longest`. (Told
 * to the breaker as chosen: cockatiel 3 asks for a wait only as it opens — the factory's `next`
 * from closed, the wait's own `next` from half-open.)
 */
class HalfOpenWaits implements IBackoff<IHalfOpenAfterBackoffContext> {
  constructor(
    readonly duration: number,
    private readonly longest: number,
    private readonly chosen: (ms: number) => void,
  ) {
    chosen(duration);
  }

  next(): HalfOpenWaits {
    return new HalfOpenWaits(Math.min(this.duration * 2, this.longest), this.longest, this.chosen);
  }
}

/** How close after a counted connection failure those of attempts already under way are the same one. */
const SAME_EPISODE_MS = 250;

/** How long the half-open probe (and the side probe of a pool queue timeout) may take before it counts as a connection failure. */
const PROBE_TIMEOUT_MS = 3000;

/** How long the side probe's verdict on a pool queue timeout stands for the next ones. */
const QUEUE_VERDICT_MS = 1000;

/** How long the side probes' connections are kept without a probe. */
const SIDE_IDLE_MS = 10_000;

/**
 * connection_exception (class 08 — 08P01 included: PgBouncer answers with it when it cannot reach
 * PostgreSQL, a query waited too long for a server connection, or one crashed), admin/crash
 * shutdown, cannot connect now (starting up), and the server ending a session it found idle (in a
 * transaction, 25P03, or at all, 57P05); and a connection refused at its start for what the
 * deployment gave it — the password or role (28P01, 28000, after a rotation or a pg_hba change) or
 * the database name (3D000, or dropped under a session: 57P04): no statement's fault, so 503 and
 * counted (they were 500s, each request trying a fresh sign-in against the server), not the
 * request's business. A database not accepting connections (`ALLOW_CONNECTIONS false`: a
 * maintenance window, a restore) refuses them with 55000, a code statements can answer too for
 * their own fault: counted only when it comes at connect (NOT_ACCEPTING).
 */
const CONNECTION_SQLSTATES = new Set([
  '57P01',
  '57P02',
  '57P03',
  '57P04',
  '25P03',
  '57P05',
  '28P01',
  '28000',
  '3D000',
]);
/** PostgreSQL's message for 55000 at connect (also when a pooled connection's next connect meets it). */
const NOT_ACCEPTING = /is not currently accepting connections/;
const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** pg-pool's answer to a caller that waited DATABASE_POOL_WAIT_MS in its queue (its own connects time out otherwise). */
const POOL_QUEUE_TIMEOUT = 'timeout exceeded when trying to connect';
/**
 * What node-postgres and pg-pool say when a connection dies or cannot be had in time — among them
 * a lone Client's own timeouts (the lock sessions' connect, `timeout expired`, and their
 * `query_timeout`, `Query read timeout`): a server that accepts and never answers.
 */
const CONNECTION_MESSAGES = [
  POOL_QUEUE_TIMEOUT,
  'Connection terminated',
  'connection timeout',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
  'timeout expired',
  'Query read timeout',
];

/**
 * True for failures that say the database cannot be reached — never for what a reachable
 * database answered about the statement (constraint violations 23xxx, serialization failures
 * 40001, deadlocks 40P01, …): those are the request's business, not the server's health.
 */
export function isConnectionFailure(err: unknown): boolean {
  // TypeORM releases a transaction's runner when its connection reports an error (a restart, a
  // terminated backend, the server's idle-in-transaction limit): the transaction's next
  // statement then fails with this, not with the connection's own error
  if (err instanceof QueryRunnerAlreadyReleasedError) return true;
  const e = err instanceof QueryFailedError ? (err.driverError as unknown) : err;
  if (!e || typeof e !== 'object') return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    // first: EPIPE has a SQLSTATE's shape (five capitals), and was taken for a statement's error
    if (CONNECTION_ERRNOS.has(code)) return true;
    if (code === '55000')
      return (
        !(err instanceof QueryFailedError) ||
        NOT_ACCEPTING.test(String((e as { message?: unknown }).message))
      );
    if (/^[0-9A-Z]{5}$/.test(code)) return code.startsWith('08') || CONNECTION_SQLSTATES.has(code);
  }
  const message = (e as { message?: unknown }).message;
  if (typeof message === 'string' && CONNECTION_MESSAGES.some((m) => message.includes(m)))
    return true;
  const cause = (e as { cause?: unknown }).cause;
  return cause !== undefined && cause !== e && isConnectionFailure(cause);
}

/**
 * A connection that was open and died under its statement — reset, terminated, closed by the
 * server's shutdown — as against one that could not be had (refused, timed out, not resolved,
 * refused at sign-in). One blink kills every connection open at that moment, and each dies only
 * when next used: at most as many such failures as there were connections.
 */
export function isConnectionDeath(err: unknown): boolean {
  if (err instanceof QueryRunnerAlreadyReleasedError) return true;
  // under a statement (TypeORM wraps every query's error): the same reset or close while a
  // connection is being opened — a balancer or pooler that accepts and drops each new one — is
  // a connection that cannot be had, counted as ever
  if (!(err instanceof QueryFailedError)) return false;
  const e = err.driverError as unknown;
  if (!e || typeof e !== 'object') return false;
  const code = (e as { code?: unknown }).code;
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === '57P01' || code === '57P02')
    return true;
  const message = (e as { message?: unknown }).message;
  return (
    typeof message === 'string' &&
    (message.includes('Connection terminated') ||
      message.includes('Client has encountered a connection error') ||
      message.includes('Client was closed and is not queryable'))
  );
}

/**
 * isConnectionDeath, for an error as a caller sees it: the breaker's 503 for it carries the
 * statement's own error as its `cause`.
 */
export function diedUnderStatement(err: unknown): boolean {
  return isConnectionDeath((err as { cause?: unknown } | null)?.cause ?? err);
}

/**
 * What a connection failure was, for the breaker's open line: its SQLSTATE or errno and the
 * driver's message — a rotated password (28P01) reached no log of the app, only "open". Only
 * connection failures open it, and their messages name no row or statement: the server's for a
 * sign-in names the user (`password authentication failed for user "shop"`), the role or the
 * database, never the password; the socket's, the address. A URL's credentials are cut all the
 * same, should one ever be in a message.
 */
export function connectionFailureCause(err: unknown): string {
  const e = err instanceof QueryFailedError ? (err.driverError as unknown) : err;
  if (!e || typeof e !== 'object') return 'cause unknown';
  const { code, message, errors } = e as { code?: unknown; message?: unknown; errors?: unknown };
  let text = typeof message === 'string' ? message : '';
  // Node's connect to a name with several addresses fails with an AggregateError, message empty
  if (!text && Array.isArray(errors)) {
    text = errors
      .map((inner) => (inner instanceof Error ? inner.message : ''))
      .filter(Boolean)
      .join('; ');
  }
  text = withoutCredentials(text).slice(0, 300);
  const prefix = typeof code === 'string' && !text.includes(code) ? `${code} ` : '';
  return `cause: ${prefix}${text || (e instanceof Error ? e.name : 'no message')}`;
}

/** A wait in this process's pool queue that ran out (DATABASE_POOL_WAIT_MS). */
function isPoolQueueTimeout(err: unknown): boolean {
  const e = err instanceof QueryFailedError ? (err.driverError as unknown) : err;
  return (
    !!e && typeof e === 'object' && (e as { message?: unknown }).message === POOL_QUEUE_TIMEOUT
  );
}

/**
 * A circuit breaker in front of PostgreSQL (cockatiel). After `failures` consecutive
 * connection-class failures (isConnectionFailure) it opens: every use of the database fails at
 * once with 503 SERVICE_UNAVAILABLE and Retry-After, without touching the pool, instead of
 * each request waiting for a connection that will not come. After `halfOpenAfterMs` the next
 * caller first sends a probe (`SELECT 1`, at most PROBE_TIMEOUT_MS; callers arriving meanwhile
 * fail fast too); its success closes the breaker and the caller's work runs, a connection
 * failure or timeout opens it again.
 *
 * It sits where work gets a connection: TransactionHost wraps each transaction attempt and
 * each pooled statement in execute(); every other use of the DataSource (TypeORM managers,
 * health pings) goes through the driver's connection acquisition, wrapped in onModuleInit.
 * A transaction rejected by the open breaker never started, so nothing is half-written.
 *
 * A wait in the pool's own queue that ran out is no sign of the database's health by itself:
 * every connection may be busy on a row lock whose holder froze while PostgreSQL answers all
 * along — counted, that opened the breaker on every instance at once (and readiness, seeing it
 * open, pulled them all). Nor is it never one: in an outage without resets (a frozen or vanished
 * host) nearly every caller's failure under load is the queue's, and uncounted the breaker never
 * opened. So it counts only when a `SELECT 1` over a connection of its own (SideConnection, at
 * most PROBE_TIMEOUT_MS) is not answered either — over the pool's own route (DATABASE_URL) and,
 * where the lock sessions have another (DATABASE_LOCK_URL: PostgreSQL behind a transaction-mode
 * pooler), over that one too, any answer sufficing: behind a pooler a frozen holder's checkouts
 * also hold its server connections, and only the direct route can tell PostgreSQL answers (a hung
 * pooler is then noticed by the statements' own silence limit, DATABASE_QUERY_TIMEOUT_MS). The
 * verdict stands for QUEUE_VERDICT_MS, for the queue timeouts that follow. Each such request is a
 * 503 either way. The half-open probe, once its PROBE_TIMEOUT_MS has passed in the pool, asks the
 * same question over the pool's route alone: a frozen holder's queue does not keep the breaker
 * open either.
 */
@Injectable()
export class DbCircuitBreaker implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(DbCircuitBreaker.name);
  private readonly policy: CircuitBreakerPolicy;
  /** Set inside execute(), so the connection acquisition below it is not counted twice. */
  private readonly guarded = new AsyncLocalStorage<true>();
  /** The first half-open wait (FIRST_HALF_OPEN_MS, or DB_BREAKER_HALF_OPEN_MS if shorter). */
  private readonly firstWaitMs: number;
  /** DB_BREAKER_HALF_OPEN_MS: the longest half-open wait. */
  private readonly longestWaitMs: number;
  /** The half-open wait of the breaker's current (or last) opening: its 503s' Retry-After. */
  private waitMs: number;
  /** When (monotonic ms) the breaker last closed. */
  private closedAt = Number.NEGATIVE_INFINITY;
  /** When (monotonic ms) the database last answered a statement of this process, if ever. */
  private lastAnsweredAt = -Infinity;
  /**
   * When (monotonic ms) the last counted connection failure happened. The attempts already under
   * way then fail with it — a 10 ms restart fails every statement in flight together — and were
   * counted as that many consecutive failures: the breaker opened, and every instance answered
   * 503 for DB_BREAKER_HALF_OPEN_MS although the database was back 10 ms later. A failure of an
   * attempt begun before it, within SAME_EPISODE_MS of it, is that same failure now. Not every
   * attempt begun before it: in a slow outage (pool waits of 5 s) each failure has attempts begun
   * before it, and the breaker would open only after failures × 5 s.
   */
  private lastFailureAt = -Infinity;
  /** Connection failures of that same episode (see lastFailureAt): not counted. */
  private readonly sameEpisode = new WeakSet<object>();
  /**
   * When (monotonic ms) a pooled connection last died under its statement (isConnectionDeath),
   * and how many such deaths since the last counted failure went uncounted. A reset kills the
   * pool's idle connections too, and a busy event loop hands them out before their sockets'
   * errors are read (~300 ms under load): each wave of requests that took one began after the
   * last counted failure, so each counted, and five waves opened the breaker for
   * DB_BREAKER_HALF_OPEN_MS after a 10 ms blink. Deaths that follow one another within
   * SAME_EPISODE_MS are that same blink, whenever their attempts began — up to the pool's size
   * (no more connections than that were open to die); a connection that cannot be had (refused,
   * timed out) counts as before, so an outage still opens the breaker at once.
   */
  private lastDeathAt = -Infinity;
  private deathsUncounted = 0;
  private readonly poolSize: number;
  /** Pool queue timeouts while the database answered a connection of its own: not counted. */
  private readonly queueOnly = new WeakSet<object>();
  /** The side probes asked about pool queue timeouts (see the class comment). */
  private readonly sides: SideConnection[];
  /** Set once the process has stopped serving: a queue timeout then counts without a side probe (none is opened). */
  private stopping = false;
  /** Whether that probe was answered; `settledAt` once it has been (monotonic ms). */
  private verdict?: { answered: Promise<boolean>; settledAt?: number };

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    const { failures, halfOpenAfterMs } = config.database.breaker;
    this.firstWaitMs = Math.min(FIRST_HALF_OPEN_MS, halfOpenAfterMs);
    this.longestWaitMs = halfOpenAfterMs;
    this.waitMs = this.firstWaitMs;
    this.poolSize = config.database.poolSize;
    const { url, lockUrl } = config.database;
    this.sides = [...new Set([url, lockUrl])].map(
      (route) => new SideConnection(route, 'shop-orders/breaker', SIDE_IDLE_MS),
    );
    const consecutive = new ConsecutiveBreaker(failures);
    // a connection failure of an attempt begun before the last counted one, within SAME_EPISODE_MS
    // of it, is that same episode (a restart fails every statement in flight at once): not counted;
    // nor is a pool queue timeout while the database answers a connection of its own
    this.policy = circuitBreaker(
      handleWhen((err) => this.counts(err) && !this.sameEpisode.has(err)),
      {
        halfOpenAfter: {
          // opening from closed: the first wait — or, soon after the last outage, the next of its
          next: () =>
            new HalfOpenWaits(
              performance.now() - this.closedAt < WAITS_REMEMBERED_MS
                ? Math.min(this.waitMs * 2, halfOpenAfterMs)
                : this.firstWaitMs,
              halfOpenAfterMs,
              (ms) => (this.waitMs = ms),
            ),
        },
        breaker: consecutive,
      },
    );
    // the failure that opened it (cockatiel tells it just before the state change)
    let cause: unknown;
    this.policy.onBreak((reason) => (cause = 'error' in reason ? reason.error : undefined));
    this.policy.onStateChange((state) => {
      // closed starts counting anew (cockatiel closes a half-open breaker on an error it does not
      // count — a probe's queue timeout while PostgreSQL answers — without resetting the count)
      if (state === CircuitState.Closed) {
        consecutive.success();
        this.closedAt = performance.now();
      }
      const name = STATE_NAMES[state];
      if (name === 'open')
        this.logger.error(
          `database circuit breaker open: failing fast for ${this.waitMs} ms; ${connectionFailureCause(cause)}`,
        );
      else this.logger.warn(`database circuit breaker ${name}`);
    });
  }

  get state(): BreakerState {
    return STATE_NAMES[this.policy.state];
  }

  /** Wraps the driver's connection acquisition, for uses of the DataSource outside execute(). */
  onModuleInit(): void {
    const driver = this.dataSource.driver as unknown as {
      obtainMasterConnection?: () => Promise<unknown>;
    };
    const obtain = driver.obtainMasterConnection?.bind(driver);
    if (!obtain) return;
    // (a connection handed out is no answer from the database: an idle one needs no round trip)
    driver.obtainMasterConnection = () =>
      this.guarded.getStore() ? obtain() : this.execute(obtain, false);
  }

  /**
   * After the HTTP server's drain (Nest runs onModuleDestroy before it; requests still running
   * then keep their side probes, or a frozen holder's queue would open the breaker on an
   * instance being stopped, failing their retries and completions at once).
   */
  onApplicationShutdown(): void {
    this.stopping = true;
    for (const side of this.sides) side.close();
  }

  /**
   * Runs `fn` (one transaction attempt, one statement) through the breaker. Rejected at once
   * with 503 while the breaker is open or a probe is in flight; a connection failure of `fn`
   * is counted and also answered as 503 (the database is unavailable, the request was fine).
   */
  async execute<T>(fn: () => Promise<T>, answers = true): Promise<T> {
    if (this.guarded.getStore()) return fn();
    // cockatiel queues callers behind a half-open probe; we fail them fast instead
    if (this.policy.state === CircuitState.HalfOpen) throw this.unavailable();
    if (this.policy.state === CircuitState.Open) {
      // the probe is a bounded SELECT 1, not the caller's work: a use case that waits on a row
      // lock (or runs long) would keep the breaker half-open, failing everyone else, meanwhile
      try {
        await this.through(() => this.probe());
      } catch (err) {
        throw err instanceof DomainError ? err : this.unavailable(err);
      }
    }
    return this.through(fn, answers);
  }

  /**
   * Runs `fn` on a connection that is not the database's own pools (a lock session on a separate
   * DATABASE_LOCK_URL): its connection failures answer 503 with Retry-After like the database's,
   * but neither count toward the breaker nor wait on it — an unreachable lock endpoint must not
   * take every route down while the database itself answers.
   */
  async uncounted<T>(fn: () => Promise<T>): Promise<T> {
    try {
      // (inside: a pooled connection it takes is not counted either — see onModuleInit)
      return await this.guarded.run(true, fn);
    } catch (err) {
      // (the lock sessions fail fast for DB_BREAKER_HALF_OPEN_MS after a connect that timed out)
      throw isConnectionFailure(err)
        ? this.unavailable(err, this.secondsOf(this.longestWaitMs))
        : err;
    }
  }

  /** The database answered a statement sent outside execute()'s own count (see answeredWithin). */
  noteAnswer(): void {
    this.lastAnsweredAt = performance.now();
  }

  /**
   * Whether the database answered a statement of this process within the last `ms` (any answer:
   * an error about the statement is one too) while the breaker is closed. Readiness asks this
   * first: during a sale the pool's queue can be seconds long while PostgreSQL answers all the
   * time, and a probe queued behind it would time out on every instance at once.
   */
  answeredWithin(ms: number): boolean {
    return (
      this.policy.state === CircuitState.Closed && performance.now() - this.lastAnsweredAt <= ms
    );
  }

  /** `answers`: whether `fn` succeeding (or failing about its statement) means the database answered. */
  private async through<T>(fn: () => Promise<T>, answers = true): Promise<T> {
    const startedAt = performance.now();
    const attempt = async () => {
      try {
        return await fn();
      } catch (err) {
        if (
          isPoolQueueTimeout(err) &&
          typeof err === 'object' &&
          err !== null &&
          (await this.answersAside())
        ) {
          this.queueOnly.add(err);
        }
        if (this.counts(err) && typeof err === 'object' && err !== null) {
          const now = performance.now();
          const death = isConnectionDeath(err);
          if (startedAt < this.lastFailureAt && now - this.lastFailureAt < SAME_EPISODE_MS) {
            this.sameEpisode.add(err);
          } else if (
            death &&
            now - this.lastDeathAt < SAME_EPISODE_MS &&
            this.deathsUncounted < this.poolSize
          ) {
            this.sameEpisode.add(err); // another connection the same blink killed
            this.deathsUncounted++;
          } else {
            this.lastFailureAt = now;
            this.deathsUncounted = 0;
          }
          if (death) this.lastDeathAt = now;
        }
        throw err;
      }
    };
    try {
      const result = await this.policy.execute(() => this.guarded.run(true, attempt));
      if (answers) this.lastAnsweredAt = performance.now();
      return result;
    } catch (err) {
      if (err instanceof BrokenCircuitError || err instanceof IsolatedCircuitError)
        throw this.unavailable();
      if (isConnectionFailure(err)) {
        // whatever it answered before, it is not answering now (unless only the queue was long)
        if (!this.queueOnly.has(err as object)) this.lastAnsweredAt = -Infinity;
        // a connection that died under its statement while the circuit stays closed: one lost (a
        // blink, a backend ended), and a retry in a second most likely gets another — the
        // half-open wait is for an outage, and for a pool whose queue ran out (a retry at once
        // would only join that queue) or a connection that could not be had
        const blink = this.state === 'closed' && isConnectionDeath(err);
        throw this.unavailable(err, blink ? 1 : undefined);
      }
      if (answers) this.lastAnsweredAt = performance.now(); // the database answered, about the statement
      throw err;
    }
  }

  /** A failure that says the database cannot be reached (see the class comment for the pool's queue). */
  private counts(err: unknown): boolean {
    return (
      isConnectionFailure(err) &&
      !(typeof err === 'object' && err !== null && this.queueOnly.has(err))
    );
  }

  /**
   * Whether the database answers a `SELECT 1` over a connection of its own: one probe at a time,
   * its verdict standing for QUEUE_VERDICT_MS after it came.
   */
  private answersAside(): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    // a process draining after its signal: a queue timeout counts as the queue's, with no probe —
    // the probe's 3 s would push the 503 of a request queued at the signal past the drain's
    // end (SHUTDOWN_TIMEOUT_MS, which DATABASE_POOL_WAIT_MS is below), and an outage matters
    // little to an instance on its way out
    if (isDraining()) return Promise.resolve(true);
    const last = this.verdict;
    if (
      last &&
      (last.settledAt === undefined || performance.now() - last.settledAt <= QUEUE_VERDICT_MS)
    ) {
      return last.answered;
    }
    const verdict: { answered: Promise<boolean>; settledAt?: number } = {
      answered: Promise.any(this.sides.map((side) => side.selectOne(PROBE_TIMEOUT_MS))).then(
        () => true,
        () => false,
      ),
    };
    void verdict.answered.then(() => (verdict.settledAt = performance.now()));
    this.verdict = verdict;
    return verdict.answered;
  }

  /**
   * One round trip on a pooled connection; if it takes too long, failed as a connection failure
   * unless a connection of its own over the pool's route (DATABASE_URL) answers within another
   * PROBE_TIMEOUT_MS: the pool's queue, not the database. Only that route: an answer over the
   * lock sessions' (PostgreSQL behind a hung pooler) would close the breaker on a dead route.
   */
  private probe(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const failed = () =>
          reject(
            new Error(
              `connection timeout: no answer to the breaker's probe within ${PROBE_TIMEOUT_MS} ms`,
            ),
          );
        if (this.stopping) failed();
        else this.sides[0].selectOne(PROBE_TIMEOUT_MS).then(() => resolve(), failed);
      }, PROBE_TIMEOUT_MS);
      this.dataSource
        .query('SELECT 1')
        .then(() => resolve(), reject)
        .finally(() => clearTimeout(timer));
    });
  }

  /**
   * Retry-After of a 503 for the database: open or half-open, the breaker's half-open wait
   * (waitMs); closed — a pool whose queue ran out, a connection that could not be had — the
   * longest, DB_BREAKER_HALF_OPEN_MS (a retry at once would only join that queue).
   */
  private get retryAfterSeconds(): number {
    return this.secondsOf(
      this.policy.state === CircuitState.Closed ? this.longestWaitMs : this.waitMs,
    );
  }

  private secondsOf(ms: number): number {
    return Math.max(1, Math.ceil(ms / 1000));
  }

  private unavailable(cause?: unknown, retryAfterSeconds = this.retryAfterSeconds): DomainError {
    const error = new DomainError(
      'SERVICE_UNAVAILABLE',
      'The database is unavailable; retry later.',
      {
        headers: { 'Retry-After': String(retryAfterSeconds) },
      },
    );
    if (cause !== undefined) Object.assign(error, { cause });
    return error;
  }
}
