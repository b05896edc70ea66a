import { CallHandler, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { Observable, from, lastValueFrom } from 'rxjs';
import type { AuthenticatedRequest } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { IdempotencyOutcome, recordIdempotency } from '../common/logging/order-log';
import { Clock } from '../common/time/clock';
import { OPENING_READS, OpeningRead, OpeningReadsOf } from '../database/opening-reads';
import { TransactionHost } from '../database/transaction-host';
import {
  IDEMPOTENCY_IGNORED,
  IDEMPOTENCY_OUTSIDE_TRANSACTION,
  IDEMPOTENCY_REQUIRED,
} from './idempotency.decorator';
import { IDEMPOTENCY_TTL_MS, idempotencyKeyOf } from './idempotency-key';
import { requestScope, sameRequest } from './idempotency-scope';
import { IdempotencyKeyLocks } from './idempotency-key-locks';
import { IdempotencyRepository, IdempotencyScope, StoredResponse } from './idempotency.repository';

type Outcome = { replay: StoredResponse } | { body: unknown };

/**
 * Idempotency-Key for POST routes (API.md, Idempotency). The request runs inside one
 * transaction that first claims the key (a non-blocking advisory lock: a concurrent twin gets
 * 409 IDEMPOTENCY_KEY_IN_USE), then runs the handler, then records the response — so the effect
 * and its record commit together or not at all. A 4xx or 5xx rolls everything back and stores
 * nothing, so a retry runs afresh. Keys are scoped per principal.
 *
 * Routes marked `transactional: false` (they call a payment provider, which must not happen
 * inside a transaction) hold the key's lock on a session of their own for as long as they run
 * (IdempotencyKeyLocks), mark the record in progress, and record the response when the handler
 * returns. Either way the key is "in use" only while its request runs: the lock dies with the
 * request, its process or its database session, and an in-progress record whose lock is free is
 * taken over at once.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  private readonly logger = new Logger(IdempotencyInterceptor.name);

  constructor(
    private readonly reflector: Reflector,
    private readonly tx: TransactionHost,
    private readonly records: IdempotencyRepository,
    private readonly locks: IdempotencyKeyLocks,
    private readonly clock: Clock,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (request.method !== 'POST') return next.handle();
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IDEMPOTENCY_IGNORED, targets))
      return next.handle();

    const required = this.reflector.get<boolean>(IDEMPOTENCY_REQUIRED, context.getHandler());
    const key = idempotencyKeyOf(request);
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
    const scope = requestScope(request, key);
    const outside = this.reflector.get<boolean>(
      IDEMPOTENCY_OUTSIDE_TRANSACTION,
      context.getHandler(),
    );
    // the outcome, for the logs: recorded before the handler runs (first), or when answered
    const note = (outcome: IdempotencyOutcome) => recordIdempotency(request, outcome);
    // the route's first read, if known from the body, goes with BEGIN and the claim
    const readsOf = this.reflector.get<OpeningReadsOf | undefined>(
      OPENING_READS,
      context.getHandler(),
    );
    const run = outside
      ? this.executeInSteps(scope, next, reply, note)
      : this.execute(scope, next, reply, note, readsOf?.(request.body) ?? []);
    return from(
      run.catch((err: unknown) => {
        if (err instanceof DomainError && err.code === 'IDEMPOTENCY_KEY_IN_USE') note('in_use');
        if (err instanceof DomainError && err.code === 'IDEMPOTENCY_KEY_REUSED') note('mismatch');
        throw err;
      }),
    );
  }

  private async executeInSteps(
    scope: IdempotencyScope,
    next: CallHandler,
    reply: FastifyReply,
    note: (outcome: IdempotencyOutcome) => void,
  ): Promise<unknown> {
    const hold = await this.locks.tryHold(scope.principal, scope.key);
    if (!hold) return this.answerBusy(scope, reply, note);
    try {
      const now = this.clock.now();
      const claim = await this.records.begin(
        scope,
        now,
        new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
      );
      if (claim.token === null) {
        if (!claim.stored) throw inUse(); // expired between the two statements: retry
        return this.replay(this.checkSameRequest(scope, claim.stored), reply, note);
      }
      note('first');
      let body: unknown;
      try {
        body = await lastValueFrom(next.handle(), { defaultValue: undefined });
      } catch (err) {
        // A retry runs afresh. Should this fail too (the database is away), the record is left
        // in progress without its lock, and the retry takes it over all the same.
        await this.records.abandon(scope, claim.token).catch((e: unknown) => {
          this.logger.warn(`idempotency claim left for takeover: ${(e as Error).message}`);
        });
        throw err;
      }
      await this.records.finish(scope, claim.token, {
        status: reply.statusCode,
        body: body === undefined ? null : JSON.stringify(body),
      });
      return body;
    } finally {
      await hold.release();
    }
  }

  /** Another request holds the key: its stored answer once completed, 422 for another request, else 409. */
  private async answerBusy(
    scope: IdempotencyScope,
    reply: FastifyReply,
    note: (outcome: IdempotencyOutcome) => void,
  ): Promise<unknown> {
    const found = await this.records.find(scope);
    if (found?.state === 'completed') {
      return this.replay(this.checkSameRequest(scope, found.stored), reply, note);
    }
    if (found && !sameRequest(scope, found.stored)) throw reused();
    throw inUse();
  }

  private checkSameRequest(scope: IdempotencyScope, stored: StoredResponse): StoredResponse {
    if (!sameRequest(scope, stored)) throw reused();
    return stored;
  }

  private replay(
    stored: StoredResponse,
    reply: FastifyReply,
    note: (outcome: IdempotencyOutcome) => void,
  ): unknown {
    note('replayed');
    void reply.header('Idempotent-Replayed', 'true');
    void reply.status(stored.status);
    return stored.body === null ? undefined : (JSON.parse(stored.body) as unknown);
  }

  private async execute(
    scope: IdempotencyScope,
    next: CallHandler,
    reply: FastifyReply,
    note: (outcome: IdempotencyOutcome) => void,
    reads: OpeningRead[],
  ): Promise<unknown> {
    const now = this.clock.now();
    const outcome = await this.tx.runOpening(
      IdempotencyRepository.claimStatements(scope.principal, scope.key),
      async (results): Promise<Outcome> => {
        const { claimed, stored } = IdempotencyRepository.claimed(results);
        if (stored) return { replay: this.checkSameRequest(scope, stored) };
        if (!claimed) throw inUse();
        note('first');
        // next.handle() is called inside the transaction's async context, so the handler's
        // repositories join this transaction.
        const body: unknown = await lastValueFrom(next.handle(), { defaultValue: undefined });
        this.records.completeOnCommit(
          scope,
          { status: reply.statusCode, body: body === undefined ? null : JSON.stringify(body) },
          now,
          new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
          // a twin's record after all (should the claim ever let two through): its answer stands
          inUse,
        );
        return { body };
      },
      reads,
    );

    return 'replay' in outcome ? this.replay(outcome.replay, reply, note) : outcome.body;
  }
}

const inUse = () =>
  new DomainError(
    'IDEMPOTENCY_KEY_IN_USE',
    'A request with this Idempotency-Key is still being processed; retry shortly.',
    { headers: { 'Retry-After': '1' } },
  );

const reused = () =>
  new DomainError(
    'IDEMPOTENCY_KEY_REUSED',
    'This Idempotency-Key was already used with a different request.',
  );
