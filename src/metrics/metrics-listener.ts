import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import type { Server } from 'node:http';
import { APP_CONFIG, AppConfig } from '../config/config';
import { serveMetrics } from './metrics-http';
import { MetricsService } from './metrics.service';

/**
 * This process's own operational listener (serveMetrics: `GET /metrics`, `GET /health/live`)
 * on this process's registry. The API opens it on METRICS_PORT, the worker on
 * WORKER_METRICS_PORT; 0 means none. A port already in use is logged, not fatal.
 */
@Injectable()
export class MetricsListener implements OnApplicationShutdown {
  private readonly logger = new Logger(MetricsListener.name);
  private server?: Server;
  private started?: Promise<Server | undefined>;

  constructor(
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Resolves once listening, or once a failure to listen has been logged. */
  async listen(port: number): Promise<void> {
    if (port === 0 || this.started) return;
    this.started = serveMetrics(
      port,
      this.config.metricsHost,
      () => this.metrics.render(),
      (m) => this.logger.warn(m),
    );
    this.server = await this.started;
  }

  /** The port actually listened on, if any. */
  get port(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections(); // a scraper's keep-alive socket must not hold the process open
    await closed;
  }
}
