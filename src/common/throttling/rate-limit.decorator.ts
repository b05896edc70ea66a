import { SetMetadata } from '@nestjs/common';

/**
 * Route-specific limits, on top of the default per-client-IP limit that every route has.
 * Each scope switches on the named policies of rate-limit.policies.ts:
 *
 * - `login`: `login-ip` (20/min per client IP); failed logins are counted separately, per account
 *   and client (FailedAttemptLimiter, in AuthService.login)
 * - `register`: `register-ip` (10/hour per client IP), `register-net` (2,560/hour per IPv6 /48) and
 *   `register-account` (10/hour per email)
 * - `order-create`: `order-create` (30/min per signed-in user)
 * - `password-change`: `password-change` (5/min per session: a stolen one spends only its own)
 *   and `password-change-ip` (10/min per client IP)
 * - `webhook`: `webhook-ip` (6,000/min per client IP) *instead of* the default: a payment
 *   provider delivers a whole sale's events from a handful of addresses; the signature (or the
 *   store's token) is checked right after, before anything is stored
 *
 * Usage, e.g. on the order creation route:
 *
 *     @Post()
 *     @RateLimit('order-create')
 *     create(@CurrentPrincipal() me: Principal, @Body() dto: CreateOrderDto) { … }
 *
 * Refusals are 429 RATE_LIMITED with Retry-After; every limited answer carries the IETF
 * `RateLimit-Policy` and `RateLimit` headers. `RATE_LIMIT_ENABLED=false` switches all of it off.
 */
export type RateLimitScope =
  'login' | 'register' | 'order-create' | 'password-change' | 'webhook' | 'refresh';

export const RATE_LIMIT_SCOPE = 'rateLimit:scope';

export const RateLimit = (scope: RateLimitScope): MethodDecorator =>
  SetMetadata(RATE_LIMIT_SCOPE, scope);
