import { WorkerHost } from '@nestjs/bullmq';
import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import type { Worker } from 'bullmq';
import type { Counter } from 'prom-client';
import { APP_CONFIG, AppConfig } from '../config/config';
import { MetricsListener } from './metrics-listener';
import { MetricsService } from './metrics.service';

/**
 * The worker has no HTTP API, but its counters matter most (payments, expiries, refunds and
 * emails happen there): this serves its registry at `GET /metrics` and `GET /health/live` on
 * WORKER_METRICS_PORT (see MetricsListener), and counts every job's outcome per queue.
 */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap {
  private readonly jobs: Counter<'queue' | 'outcome'>;

  constructor(
    metrics: MetricsService,
    private readonly listener: MetricsListener,
    private readonly discovery: DiscoveryService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.jobs = metrics.counter(
      'jobs_total',
      'Jobs completed and job attempts failed (retried or not) by this worker, per queue and outcome',
      ['queue', 'outcome'],
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const wrapper of this.discovery.getProviders()) {
      const host = wrapper.instance as unknown;
      if (!(host instanceof WorkerHost)) continue;
      const worker = (host as WorkerHost<Worker>).worker;
      const queue = worker.name;
      worker.on('completed', () => this.jobs.inc({ queue, outcome: 'completed' }));
      worker.on('failed', () => this.jobs.inc({ queue, outcome: 'failed' }));
    }
    await this.listener.listen(this.config.workerMetricsPort);
  }
}
