import { Injectable, Logger } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DataSource, EntityManager, QueryFailedError } from 'typeorm';

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
@Injectable()
export class TransactionHost {
  private readonly als = new AsyncLocalStorage<EntityManager>();
  private readonly logger = new Logger(TransactionHost.name);

  constructor(private readonly dataSource: DataSource) {}

  /** The transaction's manager inside run(), otherwise the pool-backed default manager. */
  get manager(): EntityManager {
    return this.als.getStore() ?? this.dataSource.manager;
  }

  /**
   * Runs SQL on the current transaction (or the pool) and returns the rows. TypeORM answers
   * UPDATE/DELETE with `[rows, rowCount]`; this always gives the rows, so `… RETURNING` works
   * the same for every statement.
   */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const result: unknown = await this.manager.query(sql, params);
    if (
      Array.isArray(result) &&
      result.length === 2 &&
      Array.isArray(result[0]) &&
      typeof result[1] === 'number'
    ) {
      return result[0] as T[];
    }
    return result as T[];
  }

  get inTransaction(): boolean {
    return this.als.getStore() !== undefined;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.als.getStore()) return work();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.dataSource.transaction((manager) => this.als.run(manager, work));
      } catch (err) {
        const code = pgErrorCode(err);
        if (!code || !RETRYABLE.has(code) || attempt >= MAX_ATTEMPTS) throw err;
        this.logger.warn(`transaction retry ${attempt} after ${code}`);
        await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
      }
    }
  }
}
