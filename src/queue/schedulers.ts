import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import type { Queue } from 'bullmq';

/** Repeatable jobs of the worker role (idempotent upserts: every worker may register them). */
@Injectable()
export class Schedulers implements OnApplicationBootstrap {
  constructor(
    @InjectQueue('orders') private readonly orders: Queue,
    @InjectQueue('maintenance') private readonly maintenance: Queue,
    @InjectQueue('catalog') private readonly catalog: Queue,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.orders.upsertJobScheduler(
      'orders.sweep-expired',
      { every: 60_000 },
      { name: 'orders.sweep-expired', data: {} },
    );
    await this.maintenance.upsertJobScheduler(
      'maintenance.purge-idempotency-keys',
      { every: 3_600_000 },
      { name: 'maintenance.purge-idempotency-keys', data: {} },
    );
    await this.catalog.upsertJobScheduler(
      'catalog.recompute-recommendations',
      { every: 600_000 },
      { name: 'catalog.recompute-recommendations', data: {} },
    );
    await this.maintenance.upsertJobScheduler(
      'maintenance.purge-outbox',
      { every: 3_600_000 },
      { name: 'maintenance.purge-outbox', data: {} },
    );
  }
}
