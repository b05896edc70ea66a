import { SetMetadata } from '@nestjs/common';

export const IDEMPOTENCY_REQUIRED = 'idempotency:required';

/**
 * The route refuses to run without an Idempotency-Key header (400 IDEMPOTENCY_KEY_MISSING).
 * Every other POST honours the header when it is sent.
 */
export const RequireIdempotencyKey = (): MethodDecorator => SetMetadata(IDEMPOTENCY_REQUIRED, true);
