import { SetMetadata, applyDecorators } from '@nestjs/common';
import { ApiHeader } from '@nestjs/swagger';

export const IDEMPOTENCY_REQUIRED = 'idempotency:required';
export const IDEMPOTENCY_OUTSIDE_TRANSACTION = 'idempotency:outside-transaction';

/**
 * The route refuses to run without an Idempotency-Key header (400 IDEMPOTENCY_KEY_MISSING).
 * Every other POST honours the header when it is sent.
 *
 * `transactional: false` is for handlers that call a payment provider (no network calls inside
 * a transaction): the key is then claimed by an in-progress record with a lease instead of one
 * transaction around the handler, and the handler must itself be safe to run again (its
 * provider calls carry deterministic idempotency keys, its rows derive their ids from the key).
 */
export const RequireIdempotencyKey =
  (options: { transactional?: boolean } = {}): MethodDecorator =>
  (target, key, descriptor) => {
    SetMetadata(IDEMPOTENCY_REQUIRED, true)(target, key, descriptor);
    if (options.transactional === false) {
      SetMetadata(IDEMPOTENCY_OUTSIDE_TRANSACTION, true)(target, key, descriptor);
    }
  };

/**
 * A route that honours an Idempotency-Key when sent (not required) in the `transactional: false`
 * mode of RequireIdempotencyKey: for a handler that calls another service and is safe to repeat.
 */
export const HonourIdempotencyKeyOutsideTransaction = (): MethodDecorator =>
  SetMetadata(IDEMPOTENCY_OUTSIDE_TRANSACTION, true);

export const IDEMPOTENCY_IGNORED = 'idempotency:ignored';
export const IGNORED_KEY_DESCRIPTION =
  'Accepted and ignored on credential routes: never stored, never replayed';

/**
 * Credential routes (sign-in, tokens, password): an Idempotency-Key header is accepted and
 * ignored (API.md, Idempotency). Nothing is claimed or recorded — a response carrying tokens is
 * never stored — and the handler never runs inside the interceptor's transaction, so a
 * security effect it commits (a revoked session) cannot be rolled back with the request.
 * On a controller class it covers every route of the class.
 */
export const IgnoreIdempotencyKey = () =>
  applyDecorators(
    SetMetadata(IDEMPOTENCY_IGNORED, true),
    ApiHeader({ name: 'Idempotency-Key', required: false, description: IGNORED_KEY_DESCRIPTION }),
  );
