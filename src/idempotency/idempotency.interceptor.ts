import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { Observable, from, lastValueFrom } from 'rxjs';
import type { AuthenticatedRequest } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { IDEMPOTENCY_REQUIRED } from './idempotency.decorator';
import {
  IDEMPOTENCY_HEADER,
  IDEMPOTENCY_TTL_MS,
  fingerprint,
  parseIdempotencyKey,
} from './idempotency-key';
import { IdempotencyRepository, IdempotencyScope, StoredResponse } from './idempotency.repository';

type Outcome = { replay: StoredResponse } | { body: unknown };

/**
 * Idempotency-Key for POST routes (API.md, Idempotency). The request runs inside one
 * transaction that first claims the key (a non-blocking advisory lock: a concurrent twin gets
 * 409 IDEMPOTENCY_KEY_IN_USE), then runs the handler, then records the response — so the effect
 * and its record commit together or not at all. A 4xx or 5xx rolls everything back and stores
 * nothing, so a retry runs afresh. Keys are scoped per principal.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly tx: TransactionHost,
    private readonly records: IdempotencyRepository,
    private readonly clock: Clock,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (request.method !== 'POST') return next.handle();

    const required = this.reflector.get<boolean>(IDEMPOTENCY_REQUIRED, context.getHandler());
    const key = parseIdempotencyKey(request.headers[IDEMPOTENCY_HEADER]);
    if (key === undefined) {
      if (required) {
        throw new DomainError(
          'IDEMPOTENCY_KEY_MISSING',
          'This operation requires an Idempotency-Key header.',
        );
      }
      return next.handle();
    }

    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const scope: IdempotencyScope = {
      principal: request.user ? `user:${request.user.userId}` : `ip:${request.ip}`,
      key,
      method: request.method,
      route: request.url.split('?')[0],
      fingerprint: fingerprint(request.body),
    };
    return from(this.execute(scope, next, reply));
  }

  private async execute(
    scope: IdempotencyScope,
    next: CallHandler,
    reply: FastifyReply,
  ): Promise<unknown> {
    const outcome = await this.tx.run(async (): Promise<Outcome> => {
      const now = this.clock.now();
      const { claimed, stored } = await this.records.claim(scope.principal, scope.key, now);
      if (!claimed) {
        throw new DomainError(
          'IDEMPOTENCY_KEY_IN_USE',
          'A request with this Idempotency-Key is still being processed; retry shortly.',
          { headers: { 'Retry-After': '1' } },
        );
      }
      if (stored) {
        if (
          stored.fingerprint !== scope.fingerprint ||
          stored.route !== scope.route ||
          stored.method !== scope.method
        ) {
          throw new DomainError(
            'IDEMPOTENCY_KEY_REUSED',
            'This Idempotency-Key was already used with a different request.',
          );
        }
        return { replay: stored };
      }
      // next.handle() is called inside the transaction's async context, so the handler's
      // repositories join this transaction.
      const body: unknown = await lastValueFrom(next.handle(), { defaultValue: undefined });
      await this.records.complete(
        scope,
        { status: reply.statusCode, body: body === undefined ? null : JSON.stringify(body) },
        now,
        new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
      );
      return { body };
    });

    if ('replay' in outcome) {
      void reply.header('Idempotent-Replayed', 'true');
      void reply.status(outcome.replay.status);
      return outcome.replay.body === null ? undefined : (JSON.parse(outcome.replay.body) as unknown);
    }
    return outcome.body;
  }
}
