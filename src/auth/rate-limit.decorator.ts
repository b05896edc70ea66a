import { SetMetadata } from '@nestjs/common';

/** Route-specific limits on top of the default per-IP limit (see rate-limit.policies.ts). */
export type RateLimitScope = 'login' | 'register' | 'order-create';

export const RATE_LIMIT_SCOPE = 'rateLimit:scope';

/** e.g. `@RateLimit('order-create')` on POST /v1/orders. */
export const RateLimit = (scope: RateLimitScope): MethodDecorator =>
  SetMetadata(RATE_LIMIT_SCOPE, scope);
