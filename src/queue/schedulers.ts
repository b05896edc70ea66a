import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { JOB_QUEUE, JobName, QueueName } from './queues';

/** Repeatable jobs and how often they run. */
export const SCHEDULES: { job: JobName; everyMs: number }[] = [
  { job: 'orders.sweep-expired', everyMs: 60_000 },
  { job: 'payments.reconcile', everyMs: 60_000 },
  { job: 'catalog.recompute-recommendations', everyMs: 600_000 },
  { job: 'maintenance.purge-idempotency-keys', everyMs: 3_600_000 },
  { job: 'maintenance.purge-outbox', everyMs: 3_600_000 },
  { job: 'maintenance.purge-refresh-tokens', everyMs: 3_600_000 },
];

/**
 * Registers the repeatable jobs (idempotent upserts: every worker may do it) — at boot, and
 * again whenever a queue's Redis connection comes back: a Redis that restarted without its
 * data (no persistence, a failover to an empty replica) has lost them, and the sweepers and
 * reconciliation must not wait for a worker restart to run again.
 */
@Injectable()
export class Schedulers implements OnApplicationBootstrap {
  private readonly logger = new Logger(Schedulers.name);
  private readonly queues: Partial<Record<QueueName, Queue>>;

  constructor(
    @InjectQueue('orders') orders: Queue,
    @InjectQueue('payments') payments: Queue,
    @InjectQueue('catalog') catalog: Queue,
    @InjectQueue('maintenance') maintenance: Queue,
  ) {
    this.queues = { orders, payments, catalog, maintenance };
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.register();
    for (const queue of Object.values(this.queues)) {
      const client = await queue.client;
      client.on('ready', () => {
        this.register().catch((err: unknown) =>
          this.logger.warn(`job schedulers not re-registered after a reconnect: ${String(err)}`),
        );
      });
    }
  }

  private async register(): Promise<void> {
    for (const { job, everyMs } of SCHEDULES) {
      const queue = this.queues[JOB_QUEUE[job]];
      if (!queue) throw new Error(`no queue injected for scheduled job ${job}`);
      await queue.upsertJobScheduler(job, { every: everyMs }, { name: job, data: {} });
    }
  }
}
