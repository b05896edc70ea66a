import { CallHandler, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Observable, catchError, mergeMap, throwError, timer } from 'rxjs';
import { diedUnderStatement } from './db-circuit-breaker';
import { RECONNECT_PAUSE_MS, afterSecondRun, wasRunAgain } from './transaction-host';

/** Methods whose handlers only read (RFC 9110 §9.2.1): run again, they change nothing. */
const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Runs a read route's handler again, once, when a database connection died under one of its
 * statements (diedUnderStatement: a blink — a restart, a backend ended, a pooler's reset — kills
 * every connection open at that moment). A transaction whose connection dies before its COMMIT
 * is run again the same way (TransactionHost), but a read outside one was not: every listing,
 * cart, order history and admin view a customer or admin had in flight during a 10 ms blink
 * answered 503, where the same read a moment later, on another connection, went through. Only
 * handlers of safe methods, which write nothing, are run again, and once in all: not a handler
 * whose transaction TransactionHost ran again already (wasRunAgain); a second run that fails
 * answers as TransactionHost's do (afterSecondRun: one that could not reach the database, as the
 * blink it began with — Retry-After 1). The guards are not run again: they ran and passed.
 */
@Injectable()
export class ReadRerunInterceptor implements NestInterceptor {
  private readonly logger = new Logger(ReadRerunInterceptor.name);

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    if (!SAFE_METHODS.has(request.method)) return next.handle();
    // next.handle() is deferred: each subscription runs the handler anew
    return next.handle().pipe(
      catchError((first: unknown) => {
        // (a transaction, or a read of a guard, run again already by TransactionHost: once is all)
        if (!diedUnderStatement(first) || wasRunAgain(first)) return throwError(() => first);
        this.logger.warn('read run again: a database connection died under it');
        return timer(RECONNECT_PAUSE_MS).pipe(
          mergeMap(() => next.handle()),
          catchError((again: unknown) => throwError(() => afterSecondRun(first, again))),
        );
      }),
    );
  }
}
