import { normalizeIp } from '@nestjs/throttler';
import type { RateLimitScope } from '../../auth/rate-limit.decorator';
import { normalizeEmail } from '../../users/email';

/** What a policy counts by. */
export type Tracker = 'ip' | 'account' | 'user';

/**
 * Client policies (IP, account) run before authentication, so unauthenticated and badly
 * authenticated traffic is counted too; per-user policies run after it.
 */
export type RateLimitPhase = 'before-auth' | 'after-auth';

export interface RateLimitPolicy {
  name: string;
  limit: number;
  windowSeconds: number;
  tracker: Tracker;
  /** Only on routes marked @RateLimit(scope); undefined = every route. */
  scope?: RateLimitScope;
  /**
   * Redis unreachable or too slow: `true` refuses the request (429 RATE_LIMITED with
   * Retry-After) — for login, registration and password changes, where brute force matters
   * more than availability; `false` lets it through (fail open) — for everything else.
   */
  failClosed: boolean;
}

/** The named policies. Limits are shared by every API instance (counters live in Redis). */
export const RATE_LIMIT_POLICIES: readonly RateLimitPolicy[] = [
  { name: 'default', limit: 300, windowSeconds: 60, tracker: 'ip', failClosed: false },
  {
    name: 'login-ip',
    limit: 20,
    windowSeconds: 60,
    tracker: 'ip',
    scope: 'login',
    failClosed: true,
  },
  {
    name: 'login-account',
    limit: 5,
    windowSeconds: 60,
    tracker: 'account',
    scope: 'login',
    failClosed: true,
  },
  {
    name: 'register-ip',
    limit: 10,
    windowSeconds: 3600,
    tracker: 'ip',
    scope: 'register',
    failClosed: true,
  },
  {
    name: 'order-create',
    limit: 30,
    windowSeconds: 60,
    tracker: 'user',
    scope: 'order-create',
    failClosed: false,
  },
  {
    name: 'password-change',
    limit: 5,
    windowSeconds: 60,
    tracker: 'user',
    scope: 'password-change',
    failClosed: true,
  },
];

export function phaseOf(policy: RateLimitPolicy): RateLimitPhase {
  return policy.tracker === 'user' ? 'after-auth' : 'before-auth';
}

export function appliesTo(policy: RateLimitPolicy, scope: RateLimitScope | undefined): boolean {
  return policy.scope === undefined || policy.scope === scope;
}

export interface TrackedRequest {
  /** The client IP as Fastify resolved it (X-Forwarded-For only behind a trusted proxy). */
  ip: string;
  userId?: string;
  body?: unknown;
}

/**
 * The identity a policy counts for this request, or null when it does not apply (a login
 * body without an email string: validation answers 400 anyway). IPv6 clients count per /64,
 * as one host usually owns a whole /64.
 */
export function trackerFor(tracker: Tracker, request: TrackedRequest): string | null {
  switch (tracker) {
    case 'ip':
      return `ip:${normalizeIp(request.ip)}`;
    case 'user':
      return request.userId ? `user:${request.userId}` : `ip:${normalizeIp(request.ip)}`;
    case 'account': {
      const email = (request.body as { email?: unknown } | null | undefined)?.email;
      return typeof email === 'string' ? `account:${normalizeEmail(email)}` : null;
    }
  }
}

/** `RateLimit-Policy` item (draft-ietf-httpapi-ratelimit-headers): quota and window. */
export function policyHeaderItem(name: string, limit: number, windowSeconds: number): string {
  return `"${name}";q=${limit};w=${windowSeconds}`;
}

/** `RateLimit` item: remaining quota and seconds until the window resets. */
export function stateHeaderItem(name: string, remaining: number, resetSeconds: number): string {
  return `"${name}";r=${Math.max(0, remaining)};t=${Math.max(0, resetSeconds)}`;
}
