import { Logger } from '@nestjs/common';
import type { Logger as TypeOrmLogger } from 'typeorm';
import { databaseErrorSummary, statementHead } from '../common/errors/database-errors';

/**
 * TypeORM's log output, through Nest's logger (pino in the app). A failed query is logged by
 * SQLSTATE, constraint and the statement's first words only — never the statement, its
 * parameters or the server's message and detail, which carry request values (argon2 hashes,
 * tokens, emails, statements with inlined literals). Queries themselves are not logged.
 */
export class SafeTypeOrmLogger implements TypeOrmLogger {
  private readonly logger = new Logger('Database');

  logQuery(): void {
    /* never: statements and parameters carry request values */
  }

  logQueryError(error: string | Error, query: string): void {
    const summary = databaseErrorSummary(error, query);
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
