import { Module } from '@nestjs/common';
import { ThrottlerModule } from '@nestjs/throttler';
import { RedisThrottlerStorage } from './redis-throttler.storage';
import { RATE_LIMIT_POLICIES } from './rate-limit.policies';
import { RateLimitGuard } from './rate-limit.guard';

@Module({
  imports: [
    ThrottlerModule.forRootAsync({
      useFactory: () => ({
        throttlers: RATE_LIMIT_POLICIES.map((p) => ({
          name: p.name,
          limit: p.limit,
          ttl: p.windowSeconds * 1000,
        })),
        setHeaders: false,
      }),
    }),
  ],
  providers: [RedisThrottlerStorage, RateLimitGuard],
  exports: [RateLimitGuard],
})
export class ThrottlingModule {}
