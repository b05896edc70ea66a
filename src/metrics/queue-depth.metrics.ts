import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { OutboxRepository } from '../outbox/outbox.repository';
import { QUEUES } from '../queue/queues';
import { bullPrefix } from '../queue/redis-connection';
import { REDIS } from '../redis/redis.module';
import { MetricsService } from './metrics.service';

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
 * Queue depths and outbox backlog, read at scrape time: BullMQ's keys straight from Redis (one
 * pipeline, fails fast when Redis is down) and outbox counts from PostgreSQL — at most one count
 * per BACKLOG_READ_EVERY_MS, shared by every scrape in between, so scraping as fast as one can
 * costs the database nothing more.
 */
@Injectable()
export class QueueDepthMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: MetricsService,
    private readonly outbox: OutboxRepository,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
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
    const outbox = this.outbox;
    let last: { at: number; counts: ReturnType<OutboxRepository['countBacklog']> } | null = null;
    // (on the monotonic clock: a wall clock stepped back served the cached count that much longer)
    const backlog = () => {
      if (!last || performance.now() - last.at >= BACKLOG_READ_EVERY_MS)
        last = { at: performance.now(), counts: outbox.countBacklog() };
      return last.counts;
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
  }
}
