import type { RateLimitScope } from '../../auth/rate-limit.decorator';

export type Tracker = 'ip' | 'account' | 'user';

export interface RateLimitPolicy {
  name: string;
  limit: number;
  windowSeconds: number;
  tracker: Tracker;
  /** Only on routes marked @RateLimit(scope); undefined = every route. */
  scope?: RateLimitScope;
  /**
   * Redis unreachable: `true` refuses the request (429 with Retry-After) — for login and
   * registration, where brute force matters more than availability; `false` lets it through.
   */
  failClosed: boolean;
}

/** The named policies. Limits are shared by every API instance (counters live in Redis). */
export const RATE_LIMIT_POLICIES: RateLimitPolicy[] = [
  { name: 'default', limit: 300, windowSeconds: 60, tracker: 'ip', failClosed: false },
  { name: 'login-ip', limit: 20, windowSeconds: 60, tracker: 'ip', scope: 'login', failClosed: true },
  { name: 'login-account', limit: 5, windowSeconds: 60, tracker: 'account', scope: 'login', failClosed: true },
  { name: 'register-ip', limit: 10, windowSeconds: 3600, tracker: 'ip', scope: 'register', failClosed: true },
  { name: 'order-create', limit: 30, windowSeconds: 60, tracker: 'user', scope: 'order-create', failClosed: false },
];
