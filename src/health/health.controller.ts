import { Controller, Get } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { SkipThrottle } from '@nestjs/throttler';
import { Public } from '../common/http/public.decorator';
import { DatabaseHealthIndicator } from './database.health';
import { DependencyStatusDto, LivenessDto, ReadinessDto } from './dto/health.dto';
import { ReadinessBody, readinessBody, toReadinessError } from './readiness';
import { RedisHealthIndicator } from './redis.health';

@ApiTags('operations')
@Public()
@SkipThrottle()
@Controller('health')
export class HealthController {
  /** The readiness check running now, if any (see ready()). */
  private probe?: Promise<ReadinessBody>;

  constructor(
    private readonly health: HealthCheckService,
    private readonly db: DatabaseHealthIndicator,
    private readonly redis: RedisHealthIndicator,
  ) {}

  /** 200 while the process runs. */
  @Get('live')
  @ApiOperation({
    operationId: 'getLiveness',
    summary: 'Liveness probe',
    description: 'Answers 200 while the process runs; it checks no dependency.',
  })
  @ApiOkResponse({ type: LivenessDto })
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * 200 when PostgreSQL and Redis answer; 503 otherwise. Either way the body names each
   * dependency and its status only (no driver messages, hosts or ports).
   */
  @Get('ready')
  @HealthCheck({ noCache: true, swaggerDocumentation: false }) // documented below, as it really answers
  @ApiOperation({
    operationId: 'getReadiness',
    summary: 'Readiness probe',
    description:
      'Answers 200 when PostgreSQL and Redis answer, otherwise 503 (a problem with the same ' +
      '`details`). Load balancers route on it. The body names each dependency and its status only.',
  })
  @ApiExtraModels(DependencyStatusDto)
  @ApiOkResponse({ type: ReadinessDto })
  @ApiProblems([503, '`SERVICE_UNAVAILABLE`: a dependency is down; `details` names which'])
  ready(): Promise<ReadinessBody> {
    // probes that arrive while one is running share its answer: the route is public and not
    // throttled (load balancers), so a flood of probes costs one `SELECT 1` and one `PING` at a
    // time, never a pool backed up with pings; a probe that arrives after it ends checks afresh
    this.probe ??= this.health
      .check([() => this.db.isHealthy('database'), () => this.redis.isHealthy('redis')])
      .then(readinessBody, toReadinessError)
      .finally(() => {
        this.probe = undefined;
      });
    return this.probe;
  }
}
