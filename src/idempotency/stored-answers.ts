import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { AuthenticatedRequest } from '../auth/principal';
import type { StoredAnswers } from '../common/throttling/rate-limit.guard';
import { IDEMPOTENCY_IGNORED } from './idempotency.decorator';
import { idempotencyKeyOf } from './idempotency-key';
import { requestScope, sameRequest } from './idempotency-scope';
import { IdempotencyRepository } from './idempotency.repository';

/**
 * Whether a request repeats a completed one whose answer the idempotency record holds (the
 * interceptor will replay it: API.md, "after completion → the stored status and body"). Asked by
 * the per-user rate limits before they refuse one, so a client retrying a request whose answer
 * it lost gets that answer, not a 429 — within a bound the guard sets (a replay writes nothing,
 * but is not free).
 */
@Injectable()
export class IdempotencyStoredAnswers implements StoredAnswers {
  constructor(
    private readonly reflector: Reflector,
    private readonly records: IdempotencyRepository,
  ) {}

  async holdsAnswer(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (request.method !== 'POST') return false;
    if (
      this.reflector.getAllAndOverride<boolean>(IDEMPOTENCY_IGNORED, [
        context.getHandler(),
        context.getClass(),
      ])
    ) {
      return false;
    }
    let key: string | undefined;
    try {
      key = idempotencyKeyOf(request);
    } catch {
      return false; // an invalid key: the interceptor says so, after the limits
    }
    if (key === undefined) return false;
    const scope = requestScope(request, key);
    // the database unreachable: no answer known, the limit's refusal stands
    const found = await this.records.find(scope).catch(() => null);
    return found?.state === 'completed' && sameRequest(scope, found.stored);
  }
}
