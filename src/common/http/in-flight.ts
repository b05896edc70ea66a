import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Observable, finalize } from 'rxjs';
import { IdleCounter } from '../idle-counter';

/**
 * Counts route handlers still running — including those whose client already hung up — so
 * shutdown can wait for them before the pools close.
 */
@Injectable()
export class InFlightTracker extends IdleCounter implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    this.enter();
    return next.handle().pipe(finalize(() => this.leave()));
  }
}
