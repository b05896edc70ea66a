import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
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

/** Registers the repeatable jobs (idempotent upserts: every worker may do it). */
@Injectable()
export class Schedulers implements OnApplicationBootstrap {
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
    for (const { job, everyMs } of SCHEDULES) {
      const queue = this.queues[JOB_QUEUE[job]];
      if (!queue) throw new Error(`no queue injected for scheduled job ${job}`);
      await queue.upsertJobScheduler(job, { every: everyMs }, { name: job, data: {} });
    }
  }
}
