import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import { Observable, tap } from 'rxjs';
import { render } from '../errors/problem-details.filter';
import { isUuid } from '../ids';
import { storage } from 'nestjs-pino/storage';
import { idempotencyOf } from './order-log';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { isCommand, markHandled, writeCommandLine } from './command-log';

/**
 * One JSON line (info) per completed command — every request that is not a read — with its
 * outcome: `action` (method and route pattern), `status`, `durationMs`, `principalId`, the
 * idempotency outcome, the error code when it failed, and for order routes the order's id (and
 * `to`, the state an answered order is in). `requestId` comes from the request's logger. Never
 * the body, headers or query: nothing secret. Above info (LOG_LEVEL=warn…) there is no line to
 * write, and the interceptor steps aside at once (no per-request work for nothing). A command
 * refused before its handler (a guard, the sold-out fast path) gets its line from the server's
 * onResponse hook instead (command-log.ts), with `refused: true`.
 */
@Injectable()
export class LoggingInterceptor implements NestInterceptor {
  private readonly enabled: boolean;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.enabled = ['info', 'debug', 'trace'].includes(config.logLevel);
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.enabled || context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    if (!isCommand(request)) return next.handle();
    markHandled(request);
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const started = performance.now();
    const done = (status: number, body: unknown, error?: string) => {
      writeCommandLine(
        request,
        { status, durationMs: performance.now() - started, error },
        {
          // inside the request's logging context the outcome is already bound (recordIdempotency)
          idempotency: storage.getStore() ? undefined : idempotencyOf(request),
          ...orderOf(request, body),
        },
      );
    };
    return next.handle().pipe(
      tap({
        next: (body) => done(reply.statusCode, body),
        error: (err: unknown) => {
          // the filter's rendering: the status and code the client is answered with (a bare 500,
          // named by the error's class, for an unexpected one)
          const answered = render(err);
          done(
            answered?.status ?? 500,
            undefined,
            answered?.code ?? (err instanceof Error ? err.name : 'Error'),
          );
        },
      }),
    );
  }
}

/**
 * The order a command is about: the `:id` of an order route, or the order it answered with — a
 * UUID only (the path's value is logged before the route's pipe checks it: a client's text there
 * was logged as an order id, and polluted searches by it).
 */
function orderOf(request: FastifyRequest, body: unknown): { orderId?: string; to?: string } {
  const route = request.routeOptions.url ?? '';
  if (!/\/orders(\/|$)/.test(route)) return {};
  const answered =
    typeof body === 'object' && body !== null && 'id' in body && 'status' in body
      ? body
      : undefined;
  const params = request.params as Record<string, string | undefined> | undefined;
  const raw = params?.id ?? (typeof answered?.id === 'string' ? answered.id : undefined);
  if (!isUuid(raw)) return {};
  // as the order is stored and answered (the route's pipe lower-cases the path's UUID; the
  // request's params keep the client's spelling)
  const orderId = raw.toLowerCase();
  return typeof answered?.status === 'string' && answered.id === orderId
    ? { orderId, to: answered.status }
    : { orderId };
}
