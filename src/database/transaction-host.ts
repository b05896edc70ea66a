import { Injectable, Logger } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DataSource, EntityManager, QueryFailedError } from 'typeorm';
import { IdleCounter } from '../common/idle-counter';

const RETRYABLE = new Set(['40001', '40P01']); // serialization failure, deadlock detected
const MAX_ATTEMPTS = 3;

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
  /** Work deferred to the end of the transaction, just before COMMIT. */
  beforeCommit: (() => Promise<void>)[];
  /** Callbacks for after a successful COMMIT (metrics, notifications): never for a rollback. */
  afterCommit: (() => void)[];
}

@Injectable()
export class TransactionHost {
  private readonly als = new AsyncLocalStorage<TransactionContext>();
  private readonly logger = new Logger(TransactionHost.name);
  /** Open transactions, so shutdown can let them finish before the pool closes. */
  readonly open = new IdleCounter();

  constructor(private readonly dataSource: DataSource) {}

  /** The transaction's manager inside run(), otherwise the pool-backed default manager. */
  get manager(): EntityManager {
    return this.als.getStore()?.manager ?? this.dataSource.manager;
  }

  /**
   * Runs SQL on the current transaction (or a pooled connection) and returns the rows, the
   * same way for every statement (TypeORM's plain `query()` answers UPDATE/DELETE with
   * `[rows, rowCount]`; the structured result does not).
   */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const runner = this.als.getStore()?.manager.queryRunner;
    if (runner) return (await runner.query(sql, params, true)).records as T[];
    const own = this.dataSource.createQueryRunner();
    try {
      return (await own.query(sql, params, true)).records as T[];
    } finally {
      await own.release();
    }
  }

  /**
   * Defers `work` to the end of the current transaction, right before COMMIT, after everything
   * else the use case (and the request around it) writes. For taking the hottest row locks
   * last, so they are held only for that statement and the commit. If it throws, the whole
   * transaction rolls back.
   */
  beforeCommit(work: () => Promise<void>): void {
    const ctx = this.als.getStore();
    if (!ctx) throw new Error('beforeCommit() needs an open transaction (inside run())');
    ctx.beforeCommit.push(work);
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

  get inTransaction(): boolean {
    return this.als.getStore() !== undefined;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.als.getStore()) return work();
    this.open.enter();
    try {
      return await this.runWithRetry(work);
    } finally {
      this.open.leave();
    }
  }

  private async runWithRetry<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const after: (() => void)[] = [];
        const result = await this.dataSource.transaction(async (manager) => {
          const ctx: TransactionContext = { manager, beforeCommit: [], afterCommit: after };
          const value = await this.als.run(ctx, work);
          for (const deferred of ctx.beforeCommit.splice(0)) await this.als.run(ctx, deferred);
          return value;
        });
        for (const fn of after) fn();
        return result;
      } catch (err) {
        const code = pgErrorCode(err);
        if (!code || !RETRYABLE.has(code) || attempt >= MAX_ATTEMPTS) throw err;
        this.logger.warn(`transaction retry ${attempt} after ${code}`);
        await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
      }
    }
  }
}
