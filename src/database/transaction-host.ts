import { Inject, Injectable, Logger } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ClientBase, QueryResult } from 'pg';
import { DataSource, EntityManager, QueryFailedError, QueryRunner } from 'typeorm';
import { IdleCounter } from '../common/idle-counter';
import { APP_CONFIG, AppConfig } from '../config/config';
import {
  DbCircuitBreaker,
  diedUnderStatement,
  isConnectionDeath,
  isConnectionFailure,
} from './db-circuit-breaker';
import type { OpeningRead } from './opening-reads';
import { inlineParams } from './sql-literal';
import { SideConnection } from './side-connection';

const RETRYABLE = new Set(['40001', '40P01']); // serialization failure, deadlock detected
const MAX_ATTEMPTS = 3;
/**
 * Connection deaths (isConnectionDeath) before the attempt's COMMIT was sent: the server cannot
 * have committed it, so it is run again, once, on another connection — one blink (a backend
 * ended, a pooler's reset) killed the connections open at that moment, and every request then in
 * a transaction answered 503 though a retry at once went through. A death while the COMMIT's
 * message is on its way is the lost-answer case (outcomeAfter): run again only once the server
 * says it rolled back (rolledBackByDeath).
 */
const diedBeforeCommit = new WeakSet<object>();

/**
 * Whether the connection died with the COMMIT's message (isConnectionDeath) and the server then
 * said the transaction rolled back (outcomeAfter): nothing of it was written, as with a death
 * before COMMIT, so it is marked to be run again, once, the same way (diedBeforeCommit) — a 10 ms
 * blink during a sale failed the checkouts whose COMMIT was on its way with 503s (dbpressure
 * review). A lost answer whose outcome is unknown is never run again.
 */
function rolledBackByDeath(err: unknown, outcome: CommitOutcome): boolean {
  if (outcome !== 'aborted' || !isConnectionDeath(err)) return false;
  diedBeforeCommit.add(err as object);
  return true;
}
/**
 * The pause before that second run: the pool reads the errors of the other connections the blink
 * killed (handed out before that, the retry's own BEGIN died too) and a pooler is back.
 */
export const RECONNECT_PAUSE_MS = 100;
/** Errors thrown by work that was already run again after its connection died (once is all). */
const ranAgain = new WeakSet<object>();
/**
 * Whether `err` ends work TransactionHost already ran again after a connection death: a caller
 * that runs work again itself (ReadRerunInterceptor) does not run it a third and fourth time.
 */
export function wasRunAgain(err: unknown): boolean {
  return typeof err === 'object' && err !== null && ranAgain.has(err);
}
/**
 * What work run again after a connection death answers when the second run fails too: a second
 * run that could not reach the database (a server restarting refuses new connections) answers
 * as the blink it began with (its Retry-After), not as an outage; any other failure as itself.
 */
export function afterSecondRun(first: unknown, again: unknown): unknown {
  const cause = (again as { cause?: unknown } | null)?.cause;
  const answer = cause !== undefined && isConnectionFailure(cause) ? first : again;
  if (typeof answer === 'object' && answer !== null) ranAgain.add(answer);
  return answer;
}
/**
 * Attempts a checkout may run again, besides those, because a line's price changed under it
 * (`reserve_stock` raises `price_changed` with 40001): an admin repricing a sale's products one
 * by one would otherwise spend the three attempts of a checkout queued on them and answer 503.
 */
const MAX_REPRICED_ATTEMPTS = 10;
const isRepriced = (err: unknown): boolean => {
  const e = err instanceof QueryFailedError ? (err.driverError as unknown) : err;
  return (e as { message?: unknown } | undefined)?.message === 'price_changed';
};
/** How long a COMMIT whose answer was lost is asked after while its backend is still finishing it. */
const OUTCOME_POLLS = 40;
const OUTCOME_POLL_MS = 50;
/**
 * How long the outcome of a COMMIT whose answer was lost is asked for while the database cannot
 * be reached (a restart, a crash recovery, a 10 ms blink): the question is asked again, 50 ms
 * doubling to 1 s apart, within this time. Answering 503 instead is not harmless: the retry of a
 * refresh that did commit finds its token spent and ends the session as a theft.
 */
const OUTCOME_UNREACHABLE_MS = 5_000;
/**
 * How long one asking of a COMMIT's outcome may take, connecting included: it goes over a fresh
 * connection of its own (askOutcome), which a database that answers at all answers within
 * milliseconds; one that did not is dropped, and the question asked again on a new one.
 */
const OUTCOME_ASK_TIMEOUT_MS = 1_000;

/**
 * Thrown by a transaction's work (or by a statement's mapError) for a failure that work outside
 * the transaction can remove: after the rollback, outside any transaction, `repair` runs; when it
 * changed something the whole transaction runs again (once per run()), else `failure` is thrown.
 * (A checkout refused by a purchase cap only because of the customer's own overdue reservations,
 * not yet released by the expiry: they are expired, and the checkout counts again.)
 */
/** read_only_sql_transaction: a write on a standby (its BEGIN's pg_current_xact_id too) or a read-only server. */
const READ_ONLY = '25006';

/** Whether the server takes no writes (a standby, or set read-only): `read_only` (refuseReadOnly). */
export const WRITABLE_PROBE = `SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' AS read_only`;

export const READ_ONLY_DETAIL = 'the database takes no writes (a standby, or set read-only)';

/** Throws, as a 25006, when WRITABLE_PROBE's row says the server takes no writes. */
export function refuseReadOnly(row: unknown): void {
  if ((row as { read_only?: unknown } | undefined)?.read_only === true) {
    throw Object.assign(new Error(READ_ONLY_DETAIL), { code: READ_ONLY });
  }
}

/** Gives the runner's connection back to the pool as broken: the pool ends it instead of keeping it. */
async function dropConnection(runner: QueryRunner, err: unknown): Promise<void> {
  const pg = runner as unknown as { releasePostgresConnection?: (err: unknown) => Promise<void> };
  if (pg.releasePostgresConnection) await pg.releasePostgresConnection(err);
  else await runner.release();
}

export class RetryAfterRepair extends Error {
  constructor(
    readonly failure: unknown,
    readonly repair: () => Promise<boolean>,
  ) {
    super('the transaction is run again after a repair');
  }
}

/** What the database says became of a transaction whose COMMIT was sent but never answered. */
export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

export function pgErrorCode(err: unknown): string | undefined {
  if (err instanceof QueryFailedError) {
    return (err.driverError as { code?: string } | undefined)?.code;
  }
  return (err as { code?: string } | undefined)?.code;
}

export function pgConstraint(err: unknown): string | undefined {
  if (err instanceof QueryFailedError) {
    return (err.driverError as { constraint?: string } | undefined)?.constraint;
  }
  return undefined;
}

/**
 * One use case, one transaction. `run()` opens a transaction (or joins the one already open in
 * this async context) and repositories read the current EntityManager from here, so services
 * never touch DataSource or EntityManager. A whole transaction that fails with a serialization
 * failure or deadlock is retried a bounded number of times.
 */
interface TransactionContext {
  manager: EntityManager;
  /** Callbacks for after a successful COMMIT (metrics, notifications): never for a rollback. */
  afterCommit: (() => void)[];
  /** Of those, the ones also run when the COMMIT's outcome is unknown (see afterCommitOrUnknown). */
  ifUnknown: (() => void)[];
  /** Work awaited after a successful COMMIT, before run() returns (see whenCommitted). */
  whenCommitted: (() => Promise<void>)[];
  /** Statements sent in the same message as COMMIT (see sendWithCommit). */
  withCommit: WithCommit[];
  /** Rows of the opening reads sent with BEGIN, by key, until taken (see takeOpened). */
  opened: Map<string, unknown[]>;
}

/** BEGIN's message: the opening statements, then the route's opening reads (last). */
interface Opening {
  sql: string;
  reads: OpeningRead[];
  /**
   * A read-only transaction (READ_ONLY_BEGIN): no transaction id taken, so its COMMIT writes no
   * WAL and waits for no flush — and a COMMIT whose answer is lost is simply a 503 (nothing to ask).
   */
  readOnly?: boolean;
  /** Read-only, all its statements seeing one snapshot (REPEATABLE READ): SNAPSHOT_BEGIN. */
  snapshot?: boolean;
}

interface WithCommit {
  sql: string;
  last: boolean;
  mapError?: (err: unknown) => unknown;
  onRows?: (rows: unknown[]) => void;
}

@Injectable()
export class TransactionHost {
  private readonly als = new AsyncLocalStorage<TransactionContext>();
  private readonly logger = new Logger(TransactionHost.name);
  /** Open transactions, so shutdown can let them finish before the pool closes. */
  readonly open = new IdleCounter();
  /** When a statement was last answered 25006 (performance.now()). */
  private lastReadOnlyAt = -Infinity;

  constructor(
    private readonly dataSource: DataSource,
    private readonly breaker: DbCircuitBreaker,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Callers waiting for a connection of the pool right now (0 when one is free). */
  poolWaiting(): number {
    return this.pool()?.waitingCount ?? 0;
  }

  /**
   * Whether a statement now would wait for a connection of the pool: callers are queued for one,
   * or every connection the pool may open is in use (none idle, at its size) — e.g. each held by
   * a checkout waiting on a hot row, with nobody else queued yet.
   */
  poolExhausted(): boolean {
    const pool = this.pool();
    if (!pool) return false;
    if ((pool.waitingCount ?? 0) > 0) return true;
    const max = pool.options?.max;
    return max !== undefined && (pool.idleCount ?? 0) === 0 && (pool.totalCount ?? 0) >= max;
  }

  /** pg-pool's counters (the driver's `master` pool). */
  private pool() {
    return (
      this.dataSource.driver as unknown as {
        master?: {
          waitingCount?: number;
          idleCount?: number;
          totalCount?: number;
          options?: { max?: number };
        };
      }
    ).master;
  }

  /** The transaction's manager inside run(), otherwise the pool-backed default manager. */
  get manager(): EntityManager {
    return this.als.getStore()?.manager ?? this.dataSource.manager;
  }

  /**
   * The database's clock now (`clock_timestamp()`: the moment, even inside a transaction): one
   * clock for every process, where their own may differ.
   */
  async databaseNow(): Promise<Date> {
    const [row] = await this.query<{ now: Date }>(`SELECT clock_timestamp() AS now`);
    return row.now;
  }

  /**
   * Runs SQL on the current transaction (or a pooled connection) and returns the rows, the
   * same way for every statement (TypeORM's plain `query()` answers UPDATE/DELETE with
   * `[rows, rowCount]`; the structured result does not).
   */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const runner = this.als.getStore()?.manager.queryRunner;
    if (runner) return (await runner.query(sql, params, true)).records as T[];
    return this.breaker.execute(() =>
      this.onOwnConnection(async (own) => (await own.query(sql, params, true)).records as T[]),
    );
  }

  /**
   * One statement outside a transaction whose effect is the same run twice (it is guarded: run a
   * second time it changes nothing): when its connection dies under it (isConnectionDeath: a
   * blink — a backend ended, a pooler's reset — or its answer lost with the connection), whether
   * the server ran it is not known, and it is run again, once, on another connection, as a
   * transaction whose connection died before its COMMIT is. A keyed route's record of its answer,
   * written after its work had committed, answered 503 for that work and left the record in
   * progress. A second run that cannot reach the database either answers as the first failed.
   */
  async queryRerunnable<T = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<T[]> {
    return this.rerunOnDeath(() => this.query<T>(sql, params));
  }

  /**
   * withManager for reads outside a transaction, run again like queryRerunnable: a read changes
   * nothing, so one whose connection died under it (a blink) goes through on another connection
   * instead of answering 503 (the read routes' handlers are run again as a whole:
   * ReadRerunInterceptor; this is for reads before them, in a guard).
   */
  async readRerunnable<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return this.rerunOnDeath(() => this.withManager(work));
  }

  private async rerunOnDeath<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (this.als.getStore() || !diedUnderStatement(err)) throw err;
      this.logger.warn('statement run again: its connection died under it');
      await new Promise((r) => setTimeout(r, RECONNECT_PAUSE_MS));
      try {
        return await run();
      } catch (again) {
        throw afterSecondRun(err, again);
      }
    }
  }

  /**
   * Throws a 25006 error when the server takes no writes (a standby a failover left the pool's
   * address on, or a server set read-only), its connection dropped as after any 25006; readiness
   * asks this where it asked `SELECT 1`, which a standby answers.
   *
   * While the breaker is closed its failures are not counted: readiness is public and
   * unthrottled, and its probes, each sent after the last one failed, counted as many failures as
   * anyone sent during a blink — a few polls opened the breaker, every route answering 503 for
   * DB_BREAKER_HALF_OPEN_MS after PostgreSQL was back. Open or half-open, it goes through the
   * breaker (failing fast, or probing for it).
   */
  async assertWritable(): Promise<void> {
    const probe = () =>
      this.onOwnConnection(async (own) =>
        refuseReadOnly((await own.query(WRITABLE_PROBE, [], true)).records[0]),
      );
    if (this.breaker.state !== 'closed') return this.breaker.execute(probe);
    await this.breaker.uncounted(async () => {
      try {
        await probe();
      } catch (err) {
        // a pooled connection the server had just ended (a restart, a terminated backend: its
        // FATAL not read yet) fails at its first statement — once more, on another: readiness
        // going down for one such blink took every instance out of rotation at once
        // (only a connection that died under its statement: one that could not be had — refused,
        // timed out, the pool's queue — is the answer, and a second try would only hold a slot)
        if (!isConnectionDeath(err)) throw err;
        await probe();
      }
    });
    this.breaker.noteAnswer();
  }

  /** A 25006 (read_only_sql_transaction) was answered within the last `ms`. */
  readOnlyWithin(ms: number): boolean {
    return performance.now() - this.lastReadOnlyAt < ms;
  }

  /** `work` on a pooled connection of its own, given back after it (giveBack). */
  private async onOwnConnection<T>(work: (runner: QueryRunner) => Promise<T>): Promise<T> {
    const own = this.dataSource.createQueryRunner();
    let failure: unknown;
    try {
      return await work(own);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      await this.giveBack(own, failure);
    }
  }

  /** Back to the pool — or, after a 25006, dropped (see once()). */
  private async giveBack(runner: QueryRunner, failure: unknown): Promise<void> {
    if (pgErrorCode(failure) === READ_ONLY) {
      this.lastReadOnlyAt = performance.now();
      await dropConnection(runner, failure);
    } else {
      await runner.release();
    }
  }

  /**
   * One statement outside any transaction, built only once a pool connection is in hand: `build`
   * runs after the wait for a connection (null: nothing to ask any more, the connection goes back
   * unused). For a question whose askers may give up while the pool is busy, so a statement sent
   * late does not ask (and lock) on behalf of callers that have gone another way meanwhile.
   */
  async queryWhenConnected<T = Record<string, unknown>>(
    build: () => { sql: string; params: unknown[] } | null,
  ): Promise<T[]> {
    // (counted as the database's answer only when a statement was sent: see DbCircuitBreaker)
    return this.breaker.execute(
      () =>
        this.onOwnConnection(async (own) => {
          await own.connect();
          const statement = build();
          if (!statement) return [];
          const rows = (await own.query(statement.sql, statement.params, true)).records as T[];
          this.breaker.noteAnswer();
          return rows;
        }),
      false,
    );
  }

  /**
   * Runs TypeORM repository / query-builder work on the current transaction's manager, or
   * outside a transaction on the pool through the database circuit breaker (as `query()` does).
   * Repositories use this for every entity read and write:
   * `this.tx.withManager((m) => m.getRepository(OrderEntity).findOneBy({ id }))`.
   */
  async withManager<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    const manager = this.als.getStore()?.manager;
    if (manager) return work(manager);
    return this.breaker.execute(() => work(this.dataSource.manager));
  }

  /**
   * The rows of the opening read named `key` (OpeningRead), sent with this transaction's BEGIN
   * — once; undefined when there was none (outside a transaction, another key, already taken).
   */
  takeOpened<R>(key: string): R[] | undefined {
    const opened = this.als.getStore()?.opened;
    const rows = opened?.get(key);
    if (rows === undefined) return undefined;
    opened!.delete(key);
    return rows as R[];
  }

  /**
   * Runs `fn` once the current transaction has committed (immediately when there is none);
   * never when it rolls back. For effects that must only count what really happened.
   */
  afterCommit(fn: () => void): void {
    const ctx = this.als.getStore();
    if (ctx) ctx.afterCommit.push(fn);
    else fn();
  }

  /**
   * As afterCommit, and also when the COMMIT's outcome cannot be learned (its answer lost and the
   * database not asked in time, or restarted since: outcomeAfter's 'unknown') — the transaction
   * may have committed, and run() then throws, so nothing after it runs. For effects that must not
   * be lost with a commit nobody saw, where running one for a transaction that in fact rolled back
   * is the lesser harm: a raise for a person (whatever the caller's retry then finds committed, it
   * does not raise again — found rolled back, it does its work again and raises once more), a
   * mark cleared that is only ever safe to clear.
   */
  afterCommitOrUnknown(fn: () => void): void {
    const ctx = this.als.getStore();
    if (ctx) {
      ctx.afterCommit.push(fn);
      ctx.ifUnknown.push(fn);
    } else fn();
  }

  /**
   * `work` once the current transaction has committed, awaited before the transaction's run()
   * returns — so before the request that opened it answers; at once when there is none. Never
   * after a rollback. For effects others must only see after the commit, and the caller's answer
   * only after them (the catalog cache's version bump). `work` must not throw (the data is
   * committed: a failure cannot be the request's); one that does is logged.
   */
  async whenCommitted(work: () => Promise<void>): Promise<void> {
    const ctx = this.als.getStore();
    if (ctx) ctx.whenCommitted.push(work);
    else await work();
  }

  /**
   * Sends `sql` in the same message as the transaction's COMMIT (simple protocol, parameters
   * inlined — see inlineParams): no round trip of its own, and — for the `last` one — no turn of
   * this process's event loop between it and the commit. For writes nobody reads back inside the
   * transaction (the idempotency record), and for the hottest row locks (the stock reservation,
   * `last: true`): they are then held only while the server runs the statement and commits,
   * whatever the load on this process. A failing statement aborts the transaction; `mapError`
   * turns that failure into the caller's error. Statements run in the order they were added,
   * the `last` one (at most one) after all others. The `last` one's `onRows` gets the rows of
   * its final statement once the COMMIT has succeeded (never after a rollback).
   */
  sendWithCommit(
    sql: string,
    params: unknown[],
    opts: {
      last?: boolean;
      mapError?: (err: unknown) => unknown;
      onRows?: (rows: unknown[]) => void;
    } = {},
  ): void {
    const ctx = this.als.getStore();
    if (!ctx) throw new Error('sendWithCommit() needs an open transaction (inside run())');
    if (opts.last && ctx.withCommit.some((w) => w.last)) {
      throw new Error('only one statement per transaction can go last');
    }
    if (opts.onRows && !opts.last)
      throw new Error('only the last statement sent with COMMIT gets its rows');
    ctx.withCommit.push({
      sql: inlineParams(sql, params),
      last: opts.last ?? false,
      mapError: opts.mapError,
      onRows: opts.onRows,
    });
  }

  /**
   * Like run(), with `sql` as the transaction's first statement, sent in the same message as
   * BEGIN (one round trip for both; parameters inlined); `work` gets its rows. Inside an open
   * transaction it is simply the next statement.
   */
  async runOpeningWith<R, T>(
    sql: string,
    params: unknown[],
    work: (rows: R[]) => Promise<T>,
  ): Promise<T> {
    return this.runOpening([{ sql, params }], (results) => work(results[0] as R[]));
  }

  /**
   * Like runOpeningWith() for several opening statements, all in BEGIN's message; `work` gets
   * each statement's rows. Each statement takes its own snapshot (READ COMMITTED), so one can
   * see what committed while an earlier one waited — e.g. a record read after a lock was taken.
   * `reads` (a route's OpeningReads) go last in the same message; their rows wait in the
   * transaction for the repository that takes them (takeOpened). Inside an open transaction the
   * statements are simply the next ones, and the reads are left to their repositories.
   */
  async runOpening<T>(
    statements: { sql: string; params: unknown[] }[],
    work: (results: unknown[][]) => Promise<T>,
    reads: OpeningRead[] = [],
  ): Promise<T> {
    if (this.als.getStore()) {
      const results: unknown[][] = [];
      for (const st of statements) results.push(await this.query(st.sql, st.params));
      return work(results);
    }
    const opening: Opening = {
      sql: [...statements, ...reads].map((st) => inlineParams(st.sql, st.params)).join(';\n'),
      reads,
    };
    return this.runWithRetry(work, opening);
  }

  get inTransaction(): boolean {
    return this.als.getStore() !== undefined;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.als.getStore()) return work();
    return this.runWithRetry(work);
  }

  /**
   * Like run(), but always a transaction of its own, never joined to one already open in this
   * async context: for effects that must commit whatever becomes of the caller's transaction
   * (a revoked session must stay revoked when the request that revoked it fails). Needs a
   * second pooled connection when called inside another transaction.
   */
  runOwn<T>(work: () => Promise<T>): Promise<T> {
    return this.als.exit(() => this.run(work));
  }

  /**
   * Like run(), for reads whose cost a client chooses (a search's terms): each statement of the
   * transaction is cancelled after `statementMs` (statement_timeout, SET LOCAL: 57014, a 503 to
   * retry) and runs without parallel workers (max_parallel_workers_per_gather 0), so one request
   * holds one backend on one core for a bounded time. Both are set in BEGIN's message (no round
   * trip of their own) and end with the transaction, which is read-only: no transaction id, so no
   * WAL record and no flush at its COMMIT (every catalog miss had competed with checkouts' commits
   * for the disk). Inside an open transaction it is simply that transaction's work, whose settings
   * stand (not changed for the rest of it).
   */
  async runBounded<T>(statementMs: number, work: () => Promise<T>): Promise<T> {
    if (this.als.getStore()) return work();
    const opening: Opening = {
      sql: inlineParams(
        `SELECT set_config('statement_timeout', $1, true), set_config('max_parallel_workers_per_gather', '0', true)`,
        [String(Math.max(1, Math.round(statementMs)))],
      ),
      reads: [],
      readOnly: true,
    };
    return this.runWithRetry(() => work(), opening);
  }

  /**
   * Like run(), for reads that must agree with one another (an order and its payment's refunds,
   * read by two statements): one read-only REPEATABLE READ transaction, so every statement sees
   * the same committed state — each of its own saw a refund settle between them (an order shown
   * FULFILLED, refunded 0, beside a succeeded refund of 2,000; race review). No transaction id, no
   * WAL: its COMMIT waits for no flush. Inside an open transaction it is simply that transaction's
   * work.
   */
  async runSnapshot<T>(work: () => Promise<T>): Promise<T> {
    if (this.als.getStore()) return work();
    return this.runWithRetry(() => work(), { sql: '', reads: [], readOnly: true, snapshot: true });
  }

  /** A transaction of its own, its attempts counted as open (shutdown waits for them). */
  private async runWithRetry<T>(
    work: (opened: unknown[][]) => Promise<T>,
    opening?: Opening,
  ): Promise<T> {
    this.open.enter();
    try {
      return await this.attempts(work, opening);
    } finally {
      this.open.leave();
    }
  }

  private async attempts<T>(
    work: (opened: unknown[][]) => Promise<T>,
    opening?: Opening,
  ): Promise<T> {
    let collisions = 0;
    let repriced = 0;
    let repaired = false;
    /** The 503 of an attempt whose connection died before its COMMIT, when it was run again. */
    let firstDeath: Error | undefined;
    for (;;) {
      try {
        // the circuit breaker fails the attempt fast while the database is unreachable
        return await this.breaker.execute(() => this.once(work, opening));
      } catch (err) {
        if (err instanceof RetryAfterRepair) {
          // (a repair that throws — the database unreachable meanwhile — answers with its error)
          if (repaired || !(await err.repair())) throw err.failure;
          repaired = true;
          continue;
        }
        const cause = (err as { cause?: unknown } | null)?.cause;
        const died = cause ?? err;
        if (
          firstDeath === undefined &&
          typeof died === 'object' &&
          died &&
          diedBeforeCommit.has(died)
        ) {
          firstDeath = err as Error;
          this.logger.warn(
            'transaction run again: its connection died before its COMMIT took effect',
          );
          await new Promise((r) => setTimeout(r, RECONNECT_PAUSE_MS));
          continue;
        }
        // the second run could not reach the database either (afterSecondRun: answered as the
        // blink it began with)
        if (firstDeath !== undefined && cause !== undefined && isConnectionFailure(cause))
          throw afterSecondRun(firstDeath, err);
        const code = pgErrorCode(err);
        const priceChanged = code === '40001' && isRepriced(err);
        if (priceChanged && repriced < MAX_REPRICED_ATTEMPTS) repriced++;
        else if (!code || !RETRYABLE.has(code) || ++collisions >= MAX_ATTEMPTS)
          throw firstDeath === undefined ? err : afterSecondRun(firstDeath, err);
        this.logger.warn(
          `transaction retry after ${code}${priceChanged ? " (a line's price changed)" : ''}`,
        );
        await new Promise((r) => setTimeout(r, 5 * Math.max(collisions, 1) + Math.random() * 20));
      }
    }
  }

  /** One attempt: BEGIN (with the opening statement), the work, COMMIT (with its statements). */
  private async once<T>(work: (opened: unknown[][]) => Promise<T>, opening?: Opening): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    const ctx: TransactionContext = {
      manager: runner.manager,
      afterCommit: [],
      ifUnknown: [],
      whenCommitted: [],
      withCommit: [],
      opened: new Map(),
    };
    let value: T;
    let failure: unknown;
    /** This transaction's id, taken with BEGIN: what to ask the database should COMMIT go unanswered. */
    let xid: TransactionId | null = null;
    /** Whether the COMMIT (or the message carrying it) has been sent. */
    let committing = false;
    try {
      let opened: unknown[][] = [];
      if (opening) {
        // marked first: if the opening statement fails, the server's transaction block is open
        // (aborted) and must be rolled back before the connection goes back to the pool
        markTransaction(runner, true);
        const begin = opening.snapshot
          ? SNAPSHOT_BEGIN
          : opening.readOnly
            ? READ_ONLY_BEGIN
            : BEGIN;
        const results = await this.simple(
          runner,
          opening.sql ? `${begin};\n${opening.sql}` : begin,
        );
        xid = transactionIdOf(results[1]);
        opened = results.slice(2).map((r): unknown[] => r.rows ?? []);
        // the opening reads' rows come last; work() gets the statements' own
        const reads = opened.splice(opened.length - opening.reads.length);
        opening.reads.forEach((read, i) => ctx.opened.set(read.key, reads[i]));
      } else {
        markTransaction(runner, true);
        xid = transactionIdOf((await this.simple(runner, BEGIN))[1]);
      }
      value = await this.als.run(ctx, () => work(opened));
      if (ctx.withCommit.length > 0) {
        const statements = [
          ...ctx.withCommit.filter((w) => !w.last),
          ...ctx.withCommit.filter((w) => w.last),
        ];
        let results: QueryResult[] | undefined;
        committing = true;
        try {
          results = await this.simple(
            runner,
            `${statements.map((w) => w.sql).join(';\n')};\nCOMMIT`,
          );
        } catch (err) {
          const outcome = await this.outcomeAfter(err, xid);
          if (outcome === 'unknown') this.runCallbacks(ctx.ifUnknown);
          if (outcome !== 'committed') {
            if (rolledBackByDeath(err, outcome)) throw err;
            const mapped = statements
              .map((w) => w.mapError?.(err))
              .find((e) => e !== undefined && e !== err);
            throw mapped ?? err;
          }
        }
        markTransaction(runner, false);
        // the result before COMMIT's is the last statement's final one (lost with a lost answer)
        const onRows = statements[statements.length - 1].onRows;
        if (onRows && results) {
          try {
            onRows((results[results.length - 2]?.rows ?? []) as unknown[]);
          } catch (err) {
            // committed: a failing observer must not turn the request into an error
            this.logger.warn(`onRows after commit failed: ${(err as Error).message}`);
          }
        }
      } else {
        let answer: QueryResult[] | undefined;
        committing = true;
        try {
          answer = await this.simple(runner, 'COMMIT');
        } catch (err) {
          const outcome = await this.outcomeAfter(err, xid);
          if (outcome === 'unknown') this.runCallbacks(ctx.ifUnknown);
          if (outcome !== 'committed') {
            rolledBackByDeath(err, outcome);
            throw err;
          }
        }
        markTransaction(runner, false);
        // the server answers COMMIT of a transaction a failed statement aborted with ROLLBACK, not
        // an error: work that caught that statement's error must not be reported as committed
        if (answer?.[answer.length - 1]?.command === 'ROLLBACK') throw new RolledBackAtCommit();
      }
      this.runCallbacks(ctx.afterCommit);
    } catch (err) {
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      if (!committing && isConnectionDeath(err)) diedBeforeCommit.add(err as object);
      failure = err;
      throw err;
    } finally {
      // a connection to a server that takes no writes (a standby a failover left it on, a
      // server set read-only: its sessions stay read-only) is dropped, not pooled: the next one
      // is opened afresh (the address resolved again)
      await this.giveBack(runner, failure);
    }
    // committed, and the connection back in the pool: not held while this work waits
    for (const work of ctx.whenCommitted) {
      await work().catch((err: unknown) =>
        this.logger.warn(`after commit: ${(err as Error).message}`),
      );
    }
    return value;
  }

  private runCallbacks(callbacks: (() => void)[]): void {
    for (const fn of callbacks) {
      try {
        fn();
      } catch (err) {
        // committed (or perhaps): a failing observer must neither turn the request into an error
        // (nor change the one it has) nor keep the callbacks after it from running
        this.logger.warn(`after commit failed: ${(err as Error).message}`);
      }
    }
  }

  /**
   * What became of transaction `xid` after its COMMIT (or the message carrying it) failed with
   * `err`. An error the server answered means it rolled back. A lost connection says nothing:
   * the server may have committed and lost only the answer — so ask it, on another connection,
   * while its backend finishes (pg_xact_status: `in progress` until then). While the database
   * cannot be reached the question is asked again for up to OUTCOME_UNREACHABLE_MS; 'unknown'
   * after that: the caller answers 503 as before, and a retry with the same Idempotency-Key then
   * finds the record if it did commit.
   *
   * Across a restart or a crash recovery of the server (SERVER_LIFE, asked with the status) a
   * "committed" or "in progress" says nothing about this transaction: PostgreSQL logs nothing when
   * it hands an id out, so the id of a transaction none of whose work reached the log before a
   * crash is handed out again after recovery — the status is then the new owner's. 'unknown' then;
   * "aborted" stays true (had this one committed, its id would have been in the log, and kept).
   */
  async outcomeAfter(err: unknown, xid: TransactionId | null): Promise<CommitOutcome> {
    if (!isConnectionFailure(err)) return 'aborted';
    if (!xid) return 'unknown';
    const giveUpAt = performance.now() + OUTCOME_UNREACHABLE_MS;
    let unreachable = 0;
    for (let poll = 0; poll < OUTCOME_POLLS;) {
      let status: string | null;
      try {
        const row = await this.askOutcome(xid);
        status = row?.status ?? null;
        if (row?.life !== xid.serverLife && status !== 'aborted') {
          this.logger.warn(
            `commit outcome of transaction ${xid.id} unknown: the database restarted or recovered from a crash since it began (its id may be another's now)`,
          );
          return 'unknown';
        }
      } catch (e) {
        // the database is away (restarting, recovering, a connection that went silent): ask again
        // on a new connection once it is back, for a while
        const wait = Math.min(OUTCOME_POLL_MS * 2 ** unreachable++, 1_000);
        if (performance.now() + wait < giveUpAt) {
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        this.logger.warn(
          `commit outcome of transaction ${xid.id} unknown: ${(e as Error).message}`,
        );
        return 'unknown';
      }
      poll++;
      if (status === 'committed' || status === 'aborted') {
        this.logger.warn(
          `the answer to COMMIT was lost (${(err as Error).message}); the transaction ${status}`,
        );
        return status;
      }
      if (status !== 'in progress') return 'unknown';
      await new Promise((r) => setTimeout(r, OUTCOME_POLL_MS));
    }
    return 'unknown';
  }

  /**
   * pg_xact_status of `xid` and the server's life, asked over a connection of its own, opened for
   * the question and closed after (OUTCOME_ASK_TIMEOUT_MS, connecting included), to
   * DATABASE_LOCK_URL (PostgreSQL itself, or a session-mode pool). Never over the pool: a
   * connection cut silently (no reset: a network path that drops packets for a moment) takes the
   * pool's idle connections with it, each silent until DATABASE_QUERY_TIMEOUT_MS — the question
   * asked on one of them spent the whole OUTCOME_UNREACHABLE_MS, and a request that had committed
   * answered 503: its retry found a refresh token spent (the session revoked as a theft), a sign-up
   * made, a stock adjustment without a key applied twice (blink review). A lost COMMIT answer is
   * rare: a connection per question costs nothing that matters.
   */
  private async askOutcome(
    xid: TransactionId,
  ): Promise<{ status: string | null; life: string } | undefined> {
    if (!/^\d+$/.test(xid.id)) throw new Error(`not a transaction id: ${xid.id}`);
    const side = new SideConnection(this.config.database.lockUrl, 'shop-orders/commit-outcome');
    let row: { status: string | null; life: string } | undefined;
    try {
      await side.selectOne(
        OUTCOME_ASK_TIMEOUT_MS,
        `SELECT pg_xact_status('${xid.id}'::xid8) AS status, ${SERVER_LIFE} AS life`,
        (first) => {
          row = first as typeof row;
        },
      );
    } finally {
      side.close();
    }
    return row;
  }

  /**
   * Several statements in one simple-protocol message on the runner's connection, with every
   * result returned (TypeORM's query() keeps only a single result's rows).
   */
  private async simple(runner: QueryRunner, text: string): Promise<QueryResult[]> {
    const client = (await runner.connect()) as ClientBase;
    try {
      const result = (await client.query(text)) as QueryResult | QueryResult[];
      return Array.isArray(result) ? result : [result];
    } catch (err) {
      throw new QueryFailedError(text, [], err as Error);
    }
  }
}

/**
 * A transaction whose COMMIT the server answered with ROLLBACK: a statement in it failed and the
 * work went on as if it had not. Nothing of it was written; the error is the code's, not the request's.
 */
export class RolledBackAtCommit extends Error {
  constructor() {
    super(
      'COMMIT was answered with ROLLBACK: a statement of the transaction failed and its error was swallowed',
    );
    this.name = 'RolledBackAtCommit';
  }
}

/**
 * Which life of the server this is: its start (a restart) and when its shared statistics were last
 * reset — they are discarded by a crash recovery, which restarts no postmaster (one backend killed:
 * every session ends, the server recovers, pg_postmaster_start_time() stays). Any role may read both,
 * on every supported version (the bgwriter's reset time: pg_stat_wal is PostgreSQL 14's). Read with
 * every BEGIN — a connection through a pooler outlives the server's connections, and its life — and
 * asked again with a lost COMMIT's status.
 */
const SERVER_LIFE = `pg_postmaster_start_time()::text || ' ' || coalesce(pg_stat_get_bgwriter_stat_reset_time()::text, '')`;

/** BEGIN, and the transaction's id: assigned at once, so a COMMIT whose answer is lost can be looked up. */
const BEGIN = `START TRANSACTION;\nSELECT pg_current_xact_id()::text AS xid, ${SERVER_LIFE} AS life`;
/** BEGIN of a read-only transaction (Opening.readOnly): the same two results, with no id taken. */
const READ_ONLY_BEGIN = `START TRANSACTION READ ONLY;\nSELECT NULL::text AS xid, NULL::text AS life`;
/** BEGIN of a read-only transaction whose statements all see one snapshot (Opening.snapshot). */
const SNAPSHOT_BEGIN = `START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT NULL::text AS xid, NULL::text AS life`;

const transactionIdOf = (result: QueryResult | undefined): TransactionId | null => {
  const row = result?.rows?.[0] as { xid?: string; life?: string } | undefined;
  return row?.xid && row.life !== undefined ? { id: row.xid, serverLife: row.life } : null;
};

/** A transaction's id, and the life of the server that handed it out. */
interface TransactionId {
  id: string;
  serverLife: string;
}

/** TypeORM's transaction bookkeeping, set as its own startTransaction()/commitTransaction() would. */
function markTransaction(runner: QueryRunner, active: boolean): void {
  Object.assign(runner, { isTransactionActive: active, transactionDepth: active ? 1 : 0 });
}
