import { Injectable, Logger, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { isDraining } from '../common/shutdown';
import { DatabaseHealthIndicator } from './database.health';
import { ReadinessBody, readinessBody, toReadinessError } from './readiness';
import { RedisHealthIndicator } from './redis.health';

/** `GET /health/ready`: whether this process should get traffic (HealthController). */
@Injectable()
export class ReadinessService {
  private readonly logger = new Logger('Readiness');
  /** The readiness check running now, if any (see check()). */
  private probe?: Promise<ReadinessBody>;
  /** The dependencies' statuses the last check found (`database=up redis=down`), as last logged. */
  private lastStatuses?: string;

  constructor(
    private readonly health: HealthCheckService,
    private readonly db: DatabaseHealthIndicator,
    private readonly redis: RedisHealthIndicator,
  ) {}

  /**
   * The dependencies' statuses (200), or a 503 naming each (no driver messages, hosts or ports);
   * after SIGTERM a 503 with `details.shutdown` whatever they say.
   */
  check(): Promise<ReadinessBody> {
    // SIGTERM came: out of rotation while still serving (SHUTDOWN_DELAY_MS), whatever the dependencies say
    if (isDraining()) {
      return Promise.reject(
        new ServiceUnavailableException(
          readinessBody({ status: 'shutting_down', details: { shutdown: { status: 'down' } } }),
        ),
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
          if (err instanceof ServiceUnavailableException)
            this.report(err.getResponse() as Partial<HealthCheckResult>);
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
