import { Controller, Get, Logger, ServiceUnavailableException } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { SkipThrottle } from '@nestjs/throttler';
import { Public } from '../common/http/public.decorator';
import { isDraining } from '../common/shutdown';
import { DatabaseHealthIndicator } from './database.health';
import { DependencyStatusDto, LivenessDto, ReadinessDto } from './dto/health.dto';
import { ReadinessBody, readinessBody, toReadinessError } from './readiness';
import { RedisHealthIndicator } from './redis.health';

@ApiTags('operations')
@Public()
@SkipThrottle()
@Controller('health')
export class HealthController {
  private readonly logger = new Logger('Readiness');
  /** The readiness check running now, if any (see ready()). */
  private probe?: Promise<ReadinessBody>;
  /** The dependencies' statuses the last check found (`database=up redis=down`), as last logged. */
  private lastStatuses?: string;

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
      '`details`). Load balancers route on it. The body names each dependency and its status only. ' +
      'PostgreSQL counts as answering while this process has callers queued for its pool and a ' +
      'statement answered in the last 2 s (no probe queued behind a sale); with callers queued and ' +
      'no such answer, it is probed over a connection of its own. After SIGTERM: 503 with ' +
      '`details.shutdown` for SHUTDOWN_DELAY_MS while the process still serves (drain first).',
  })
  @ApiExtraModels(DependencyStatusDto)
  @ApiOkResponse({ type: ReadinessDto })
  @ApiProblems([503, '`SERVICE_UNAVAILABLE`: a dependency is down, or the process is draining after SIGTERM; `details` names which'])
  ready(): Promise<ReadinessBody> {
    // SIGTERM came: out of rotation while still serving (SHUTDOWN_DELAY_MS), whatever the dependencies say
    if (isDraining()) {
      return Promise.reject(
        new ServiceUnavailableException(readinessBody({ status: 'shutting_down', details: { shutdown: { status: 'down' } } })),
      );
    }
    // probes that arrive while one is running share its answer: the route is public and not
    // throttled (load balancers), so a flood of probes costs one `SELECT 1` and one `PING` at a
    // time, never a pool backed up with pings; a probe that arrives after it ends checks afresh
    this.probe ??= this.health
      .check([() => this.db.isHealthy('database'), () => this.redis.isHealthy('redis')])
      .then(
        (result) => {
          this.report(result);
          return readinessBody(result);
        },
        (err: unknown) => {
          if (err instanceof ServiceUnavailableException) this.report(err.getResponse() as Partial<HealthCheckResult>);
          return toReadinessError(err);
        },
      )
      .finally(() => {
        this.probe = undefined;
      });
    return this.probe;
  }

  /**
   * Logs readiness when it changes, not per probe: terminus's own logger (one error line per
   * failed check) is off, since anyone may probe this public, unthrottled route and an outage
   * would otherwise turn every probe into an error line — thousands a second at will, when the
   * logs matter most. A dependency that goes down is one warning naming it (with its driver's
   * message, which stays out of the body); its return, one line.
   */
  private report(result: Partial<HealthCheckResult>): void {
    const details = result.details ?? {};
    const statuses = Object.entries(details)
      .map(([name, v]) => `${name}=${String(v.status)}`)
      .join(' ');
    const previous = this.lastStatuses;
    if (statuses === previous) return;
    this.lastStatuses = statuses;
    if (result.status === 'ok') {
      if (previous !== undefined) this.logger.log(`ready again (${statuses})`);
      return;
    }
    const why = Object.entries(details)
      .filter(([, v]) => v.status !== 'up')
      .map(([name, v]) => (typeof v.message === 'string' ? `${name}: ${v.message}` : name))
      .join('; ');
    this.logger.warn(`not ready (${statuses}): ${why}`);
  }
}
