import { Inject, Injectable, Logger } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type Redis from 'ioredis';
import { RateLimitedLog } from '../common/logging/rate-limited-log';
import { REDIS } from '../redis/redis.module';
import { credentialsRefusal, refusedSignIn } from '../redis/sign-in-refusal';

/** How often a probe looks whether a reconnecting client is connected again. */
const RECONNECT_POLL_MS = 25;

@Injectable()
export class RedisHealthIndicator {
  private readonly logger = new Logger(RedisHealthIndicator.name);
  /** When a probe first found the client without a connection (cleared when one finds it connected). */
  private unconnectedSince?: number;
  /** The shared client's refusals, one line per kind (WRONGPASS, NOAUTH, NOPERM) and 10 s. */
  private readonly refusals = new RateLimitedLog();

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly indicator: HealthIndicatorService,
  ) {
    // the client's other errors are this indicator's to report, as readiness; these are no outage
    // to wait out but a configuration to fix (a password rotated on the server, not in REDIS_URL):
    // at error, every reconnect refused again (ioredis tries for ever), and they were in no line
    this.redis.on('error', (err: unknown) => this.logRefusal(err));
  }

  private logRefusal(err: unknown): void {
    const reply = credentialsRefusal(err);
    if (reply === undefined) return;
    // (the NOAUTH that follows a WRONGPASS on its connection, to the next command, says no more)
    if (reply.startsWith('NOAUTH') && refusedSignIn(this.redis)?.startsWith('WRONGPASS')) return;
    const line = reply.startsWith('NOPERM')
      ? `REDIS_URL: Redis refused a command to its user (${reply}): allow it in the user's ACL`
      : `REDIS_URL: Redis refused this process's credentials (${reply}): the shared client cannot connect until REDIS_URL has the user and password the server has`;
    this.refusals.write(reply.split(' ')[0], line, (l) => this.logger.error(l));
  }

  /** Why the client is not connected, when Redis refused its sign-in; else `otherwise`. */
  private unconnected(otherwise: string): string {
    const reply = refusedSignIn(this.redis);
    return reply ? `REDIS_URL's credentials refused (${reply})` : otherwise;
  }

  /**
   * Up when Redis answers a PING within `timeoutMs`. A client between connections (one dropped
   * and being replaced: a Redis restart, a failover, a killed connection — ioredis refuses every
   * command at once while it reconnects, 200 ms at least) gets that allowance to reconnect
   * instead of being reported down at once: every API process reconnects at the same moment, and
   * a load balancer probing then took the whole fleet out for a blip.
   */
  async isHealthy(key: string, timeoutMs = 1000): Promise<HealthIndicatorResult> {
    const check = this.indicator.check(key);
    // an outage, not a blip: the client has been without a connection for longer than a probe
    // waits (since a probe first saw it so) — down at once, as before, rather than after the wait
    if (this.redis.status === 'ready') this.unconnectedSince = undefined;
    else if (this.unconnectedSince === undefined) this.unconnectedSince = performance.now();
    else if (performance.now() - this.unconnectedSince > timeoutMs) {
      return check.down({
        message: this.unconnected(
          `not connected for over ${timeoutMs} ms (Redis ${this.redis.status})`,
        ),
      });
    }
    const probe = { stopped: false, lastError: undefined as unknown };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.pingOnceConnected(probe),
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            const why =
              probe.lastError instanceof Error
                ? `: ${probe.lastError.message}`
                : ` (Redis ${this.redis.status})`;
            reject(new Error(this.unconnected(`no answer within ${timeoutMs} ms${why}`)));
          }, timeoutMs);
        }),
      ]);
      return check.up();
    } catch (err) {
      return check.down({ message: err instanceof Error ? err.message : 'unreachable' });
    } finally {
      probe.stopped = true;
      clearTimeout(timer);
    }
  }

  /** A PING once the client is connected; one refused because its connection went away is sent again on the next. */
  private async pingOnceConnected(probe: { stopped: boolean; lastError: unknown }): Promise<void> {
    while (!probe.stopped) {
      if (this.redis.status !== 'ready') {
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_POLL_MS));
        continue;
      }
      try {
        this.unconnectedSince = undefined;
        await this.redis.ping();
        return;
      } catch (err) {
        if (this.redis.status === 'ready') throw err; // Redis's own refusal: no reconnect to wait for
        probe.lastError = err;
      }
    }
  }
}
