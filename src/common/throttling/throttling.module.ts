import { Module } from '@nestjs/common';
import { ThrottlerModule } from '@nestjs/throttler';
import { AccountRateLimit } from './account-rate-limit';
import { FailedAttemptLimiter } from './failed-attempt-limiter';
import { ClientRateLimitGuard, UserRateLimitGuard } from './rate-limit.guard';
import { RATE_LIMIT_POLICIES } from './rate-limit.policies';
import { RedisThrottlerStorage } from './redis-throttler.storage';

/**
 * Rate limiting, and FailedAttemptLimiter for password sign-ins. The guards are exported, not
 * registered here: AuthModule registers them as global guards around the access-token guard
 * (client policies before it, per-user after it).
 */
@Module({
  imports: [
    ThrottlerModule.forRoot({
      throttlers: RATE_LIMIT_POLICIES.map((p) => ({
        name: p.name,
        limit: p.limit,
        ttl: p.windowSeconds * 1000,
      })),
      // we write the IETF headers ourselves (RateLimitGuard), not X-RateLimit-*
      setHeaders: false,
    }),
  ],
  providers: [
    RedisThrottlerStorage,
    ClientRateLimitGuard,
    UserRateLimitGuard,
    FailedAttemptLimiter,
    AccountRateLimit,
  ],
  exports: [ClientRateLimitGuard, UserRateLimitGuard, FailedAttemptLimiter, AccountRateLimit],
})
export class ThrottlingModule {}
