import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { HealthController } from './health.controller';
import { DatabaseHealthIndicator } from './database.health';
import { KeyPrefixClaimMetrics } from './key-prefix-claim.metrics';
import { ReadinessService } from './readiness.service';
import { RedisHealthIndicator } from './redis.health';
import { SchemaCheck } from './schema-check';

@Module({
  // terminus's per-check error line is off: ReadinessService logs readiness when it changes
  imports: [TerminusModule.forRoot({ logger: false, gracefulShutdownTimeoutMs: 0 })],
  controllers: [HealthController],
  providers: [
    DatabaseHealthIndicator,
    RedisHealthIndicator,
    ReadinessService,
    KeyPrefixClaimMetrics,
    SchemaCheck,
  ],
})
export class HealthModule {}
