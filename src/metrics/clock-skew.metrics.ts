import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { REDIS } from '../redis/redis.module';
import { MetricsService } from './metrics.service';

/**
 * How far this host's clock is from the servers' (PostgreSQL's `clock_timestamp()`, Redis's
 * `TIME`), either way, read at scrape time: the reading's own round trip is halved out (the
 * server's time is taken as the midpoint's), so a slow reply does not pass for skew.
 *
 * The design allows 5 minutes (`CLOCK_SKEW_MS`): idempotency records are stamped with the
 * API host's clock plus that much, revocation marks outlive a token by it, access tokens issued
 * further ahead are refused, and a reservation's deadline is stamped on the checkout's host.
 * Past it, or far short of it, those degrade silently — this is what an alert watches (alert
 * well below 5 minutes: a minute is plenty).
 */
@Injectable()
export class ClockSkewMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: MetricsService,
    private readonly tx: TransactionHost,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    const readers: Record<string, () => Promise<number>> = {
      postgres: async () => (await this.tx.databaseNow()).getTime(),
      redis: async () => {
        const [seconds, micros] = await this.redis.time();
        return Number(seconds) * 1000 + Number(micros) / 1000;
      },
    };
    const skewAgainst = async (read: () => Promise<number>) => {
      const before = this.clock.now().getTime();
      const server = await read();
      const after = this.clock.now().getTime();
      return Math.abs((before + after) / 2 - server) / 1000;
    };
    this.metrics.gauge(
      'clock_skew_seconds',
      "How far this host's clock is from the server's (either way), at scrape time",
      ['against'],
      async function () {
        this.reset();
        await Promise.all(
          Object.entries(readers).map(async ([against, read]) => {
            try {
              this.set({ against }, await skewAgainst(read));
            } catch {
              /* that server is down: no sample this scrape; readiness reports it */
            }
          }),
        );
      },
    );
  }
}
