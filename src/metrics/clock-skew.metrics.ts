import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { Clock } from '../common/time/clock';
import { withTimeout } from '../common/with-timeout';
import { TransactionHost } from '../database/transaction-host';
import { REDIS } from '../redis/redis.module';
import { MetricsService } from './metrics.service';

/**
 * How far this host's clock is from the servers' (PostgreSQL's `clock_timestamp()`, Redis's
 * `TIME`), either way, read at scrape time: the reading's own round trip is halved out (the
 * server's time is taken as the midpoint's), and the wait for a pool connection is left out of it
 * — a slow reply shifts it by half its time at most. Each reading has 800 ms: one server slow to
 * answer leaves the other's sample in the page.
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
    const now = () => this.clock.now().getTime();
    // each reading: this host's clock just before the question is sent (once a pool connection is
    // in hand: the wait for one is not the server's time) and as the answer arrives, and the
    // server's time in between
    const readers: Record<string, () => Promise<Reading>> = {
      postgres: async () => {
        let before = 0;
        const [row] = await this.tx.queryWhenConnected<{ now: Date }>(() => {
          before = now();
          return { sql: 'SELECT clock_timestamp() AS now', params: [] };
        });
        return { before, server: row.now.getTime(), after: now() };
      },
      redis: async () => {
        const before = now();
        const [seconds, micros] = await this.redis.time();
        return { before, server: Number(seconds) * 1000 + Number(micros) / 1000, after: now() };
      },
    };
    this.metrics.gauge(
      'clock_skew_seconds',
      "How far this host's clock is from the server's (either way), at scrape time",
      ['against'],
      async function () {
        this.reset();
        await Promise.all(
          Object.entries(readers).map(async ([against, read]) => {
            // each on its own bound, inside the page's: a busy pool leaves Redis's sample in
            try {
              const r = await withTimeout(read(), READ_WITHIN_MS);
              this.set({ against }, Math.abs((r.before + r.after) / 2 - r.server) / 1000);
            } catch {
              /* that server is down or slow: no sample this scrape; readiness reports it */
            }
          }),
        );
      },
    );
  }
}

/** A clock reading: this host's before and after, the server's in between (ms since the epoch). */
interface Reading {
  before: number;
  server: number;
  after: number;
}

/** How long one reading may take (within the page's 1 s for every gauge: metrics.service.ts). */
const READ_WITHIN_MS = 800;
