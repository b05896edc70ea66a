import { Controller, Get } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { HealthCheck } from '@nestjs/terminus';
import { SkipThrottle } from '@nestjs/throttler';
import { Public } from '../common/http/public.decorator';
import { DependencyStatusDto, LivenessDto, ReadinessDto } from './dto/health.dto';
import type { ReadinessBody } from './readiness';
import { ReadinessService } from './readiness.service';

@ApiTags('operations')
@Public()
// not counted by the per-client limit: load balancers probe every few seconds from a handful of
// addresses, and a refused probe would take a healthy instance out of rotation
@SkipThrottle()
@Controller('health')
export class HealthController {
  constructor(private readonly readiness: ReadinessService) {}

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
      '`details`). Load balancers route on it. The body names each dependency and its status only. ' +
      'PostgreSQL counts as answering while this process has callers queued for its pool and a ' +
      'statement answered in the last 2 s (no probe queued behind a sale); with callers queued and ' +
      'no such answer, it is probed over a connection of its own. After SIGTERM: 503 with ' +
      '`details.shutdown` for SHUTDOWN_DELAY_MS while the process still serves (drain first).',
  })
  @ApiExtraModels(DependencyStatusDto)
  @ApiOkResponse({ type: ReadinessDto })
  @ApiProblems([
    503,
    '`SERVICE_UNAVAILABLE`: a dependency is down, or the process is draining after SIGTERM; `details` names which',
  ])
  ready(): Promise<ReadinessBody> {
    return this.readiness.check();
  }
}
