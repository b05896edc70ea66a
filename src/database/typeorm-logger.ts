import { Logger } from '@nestjs/common';
import type { Logger as TypeOrmLogger } from 'typeorm';
import {
  databaseErrorSummary,
  insufficientResources,
  statementHead,
} from '../common/errors/database-errors';
import { RateLimitedLog } from '../common/logging/rate-limited-log';

/**
 * TypeORM's log output, through Nest's logger (pino in the app). A failed query is logged by
 * SQLSTATE, constraint and the statement's first words only — never the statement, its
 * parameters or the server's message and detail, which carry request values (argon2 hashes,
 * tokens, emails, statements with inlined literals). Queries themselves are not logged.
 */
export class SafeTypeOrmLogger implements TypeOrmLogger {
  private readonly logger = new Logger('Database');
  /** Class 53's errors, one line per SQLSTATE and window: a full disk fails every write. */
  private readonly shortOfLog = new RateLimitedLog();

  logQuery(): void {
    /* never: statements and parameters carry request values */
  }

  /**
   * At warn — but a server short of resources (SQLSTATE class 53: disk full, out of memory, no
   * connection slots) at error, saying what it is short of, limited per SQLSTATE: it lasts until
   * an operator acts, and the worker's jobs meet it here only (the API's requests also through
   * ProblemDetailsFilter, which logs it at error too).
   */
  logQueryError(error: string | Error, query: string): void {
    const summary = databaseErrorSummary(error, query);
    const shortOf = summary && insufficientResources(summary.sqlState);
    if (shortOf) {
      this.shortOfLog.write(summary.sqlState, `query failed: ${shortOf}`, (line) =>
        this.logger.error({ ...summary, reason: shortOf }, line),
      );
      return;
    }
    this.logger.warn(summary ?? { statement: statementHead(query) }, 'query failed');
  }

  logQuerySlow(time: number, query: string): void {
    this.logger.warn({ statement: statementHead(query), ms: time }, 'slow query');
  }

  logSchemaBuild(message: string): void {
    this.logger.log(message);
  }

  logMigration(message: string): void {
    this.logger.log(message);
  }

  log(level: 'log' | 'info' | 'warn', message: unknown): void {
    if (level === 'warn') this.logger.warn(message);
    else this.logger.log(message);
  }
}
