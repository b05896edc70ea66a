import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { OutboxBacklog, OutboxRepository } from '../outbox/outbox.repository';
import { QUEUES } from '../queue/queues';
import { bullPrefix } from '../queue/redis-connection';
import { REDIS } from '../redis/redis.module';
import { MetricsService } from './metrics.service';
import { oldestWaitingAgeSeconds, readWaitingJobs } from './queue-age';

/** BullMQ key type per job state (lists and sorted sets under `<prefix>:bull:<queue>:<state>`). */
const STATES = {
  wait: 'llen',
  active: 'llen',
  delayed: 'zcard',
  prioritized: 'zcard',
  failed: 'zcard',
} as const;

/** How long one outbox count serves every scrape (a scrape flood is one query per this). */
const BACKLOG_READ_EVERY_MS = 5_000;

/**
 * Queue depths and outbox backlog, and how late each is, read at scrape time: BullMQ's keys
 * straight from Redis (one pipeline for the depths, one script for the oldest waiting jobs; both
 * fail fast when Redis is down) and the outbox's counts and oldest pending row from PostgreSQL —
 * at most one read per BACKLOG_READ_EVERY_MS, shared by every scrape in between, so scraping as
 * fast as one can costs the database nothing more.
 */
@Injectable()
export class QueueDepthMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: MetricsService,
    private readonly outbox: OutboxRepository,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    const prefix = bullPrefix(this.config.redis.keyPrefix);
    const redis = this.redis;
    this.metrics.gauge(
      'queue_jobs',
      'BullMQ jobs by queue and state',
      ['queue', 'state'],
      async function () {
        this.reset();
        const pipeline = redis.pipeline();
        const labels: { queue: string; state: string }[] = [];
        for (const queue of QUEUES) {
          for (const [state, command] of Object.entries(STATES)) {
            pipeline[command](`${prefix}:${queue}:${state}`);
            labels.push({ queue, state });
          }
        }
        try {
          const results = (await pipeline.exec()) ?? [];
          results.forEach(([err, value], i) => {
            if (!err) this.set(labels[i], Number(value));
          });
        } catch {
          /* Redis down: no samples this scrape; readiness reports it */
        }
      },
    );
    const clock = this.clock;
    this.metrics.gauge(
      'queue_oldest_waiting_age_seconds',
      'How long the oldest job ready to run has waited for a worker, per queue (0 when none)',
      ['queue'],
      async function () {
        this.reset();
        try {
          const waiting = await readWaitingJobs(redis, prefix, QUEUES);
          // (this host's clock: BullMQ stamps a job's times with the clock of the worker that
          // queued or delayed it and keeps no server time; Redis's TIME would be a third clock)
          const now = clock.now().getTime();
          QUEUES.forEach((queue, i) =>
            this.set({ queue }, oldestWaitingAgeSeconds(waiting[i], now)),
          );
        } catch {
          /* Redis down: no samples this scrape; readiness reports it */
        }
      },
    );

    const outbox = this.outbox;
    let last: { at: number; backlog: Promise<OutboxBacklog & { readAt: number }> } | null = null;
    // (on the monotonic clock: a wall clock stepped back served the cached count that much longer)
    const backlog = () => {
      if (!last || performance.now() - last.at >= BACKLOG_READ_EVERY_MS)
        last = {
          at: performance.now(),
          backlog: outbox.countBacklog().then((b) => ({ ...b, readAt: performance.now() })),
        };
      return last.backlog;
    };
    this.metrics.gauge(
      'outbox_backlog',
      'Outbox rows not yet published',
      ['status'],
      async function () {
        // the last scrape's numbers must not stand in for this one's when the count fails
        this.reset();
        try {
          const counts = await backlog();
          this.set({ status: 'pending' }, counts.pending);
          this.set({ status: 'dead' }, counts.dead);
        } catch {
          /* database down: no sample this scrape; readiness reports it */
        }
      },
    );
    this.metrics.gauge(
      'outbox_oldest_pending_age_seconds',
      'How long the oldest pending outbox row has waited to be published (0 when none)',
      [],
      async function () {
        // (not reset(): that leaves a gauge without labels a 0, which says "nothing waiting")
        this.remove();
        try {
          this.set(oldestPendingAgeSeconds(await backlog(), performance.now()));
        } catch {
          /* database down: no sample this scrape; readiness reports it */
        }
      },
    );
  }
}

/**
 * The oldest pending row's age at `now` (the monotonic clock): as the count read it, plus the
 * time since — a count serves scrapes for up to BACKLOG_READ_EVERY_MS, and a row still pending
 * has waited that much longer (one published since is at most that long overstated). 0 when none.
 */
export function oldestPendingAgeSeconds(
  backlog: Pick<OutboxBacklog, 'pending' | 'oldestPendingAgeMs'> & { readAt: number },
  now: number,
): number {
  if (backlog.pending === 0) return 0;
  return (backlog.oldestPendingAgeMs + Math.max(0, now - backlog.readAt)) / 1000;
}
