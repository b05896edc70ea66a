import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { SkipThrottle } from '@nestjs/throttler';
import { Public } from '../common/http/public.decorator';
import { DatabaseHealthIndicator } from './database.health';
import { ReadinessBody, readinessBody, toReadinessError } from './readiness';
import { RedisHealthIndicator } from './redis.health';

@ApiTags('operations')
@Public()
@SkipThrottle()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: DatabaseHealthIndicator,
    private readonly redis: RedisHealthIndicator,
  ) {}

  /** 200 while the process runs. */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * 200 when PostgreSQL and Redis answer; 503 otherwise. Either way the body names each
   * dependency and its status only (no driver messages, hosts or ports).
   */
  @Get('ready')
  @HealthCheck()
  ready(): Promise<ReadinessBody> {
    return this.health
      .check([() => this.db.isHealthy('database'), () => this.redis.isHealthy('redis')])
      .then(readinessBody, toReadinessError);
  }
}
