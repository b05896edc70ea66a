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

export const IDEMPOTENCY_IGNORED = 'idempotency:ignored';
export const IGNORED_KEY_DESCRIPTION =
  'Accepted and ignored on this route (credentials, webhooks): never stored, never replayed';

/**
 * Routes where an Idempotency-Key header is accepted and ignored: nothing is claimed or
 * recorded, and the handler never runs inside the interceptor's transaction.
 * - Credential routes (sign-in, tokens, password; API.md, Idempotency): a response carrying
 *   tokens is never stored, and a security effect they commit (a revoked session) cannot be
 *   rolled back with the request.
 * - Webhooks: the sender's own event id is what makes a delivery once; honouring a key there
 *   would open a transaction for every anonymous caller before its signature is checked, and
 *   hold it across the storage webhook's HeadObject calls.
 * On a controller class it covers every route of the class.
 */
export const IgnoreIdempotencyKey = () =>
  applyDecorators(
    SetMetadata(IDEMPOTENCY_IGNORED, true),
    ApiHeader({ name: 'Idempotency-Key', required: false, description: IGNORED_KEY_DESCRIPTION }),
  );
