import { WorkerHost } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { Server, createServer } from 'node:http';
import type { Worker } from 'bullmq';
import type { Counter } from 'prom-client';
import { APP_CONFIG, AppConfig } from '../config/config';
import { MetricsService } from './metrics.service';

/**
 * The worker has no HTTP API, but its counters matter most (payments, expiries, refunds and
 * emails happen there): this serves its registry at `GET /metrics` and `GET /health/live` on
 * WORKER_METRICS_PORT, and counts every job's outcome per queue. A port already in use is
 * logged, not fatal — jobs matter more than their metrics.
 */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WorkerMetricsServer.name);
  private server?: Server;
  private readonly jobs: Counter<'queue' | 'outcome'>;

  constructor(
    private readonly metrics: MetricsService,
    private readonly discovery: DiscoveryService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.jobs = metrics.counter('jobs_total', 'Jobs finished by this worker, per queue and outcome', ['queue', 'outcome']);
  }

  onApplicationBootstrap(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const host = wrapper.instance as unknown;
      if (!(host instanceof WorkerHost)) continue;
      const worker = (host as WorkerHost<Worker>).worker;
      const queue = worker.name;
      worker.on('completed', () => this.jobs.inc({ queue, outcome: 'completed' }));
      worker.on('failed', () => this.jobs.inc({ queue, outcome: 'failed' }));
    }
    const port = this.config.workerMetricsPort;
    if (port === 0) return;
    this.server = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') {
        this.metrics.render().then(
          (text) => {
            res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text);
          },
          () => res.writeHead(500).end(),
        );
      } else if (req.method === 'GET' && req.url === '/health/live') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else {
        res.writeHead(404).end();
      }
    });
    this.server.on('error', (err) => this.logger.warn(`worker metrics not served on port ${port}: ${err.message}`));
    this.server.listen(port, this.config.http.host);
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
