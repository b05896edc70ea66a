import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Server, createServer } from 'node:http';
import { APP_CONFIG, AppConfig } from '../config/config';
import { MetricsService } from './metrics.service';

/**
 * This process's own operational listener, apart from the public port: `GET /metrics`
 * (Prometheus text) and `GET /health/live`, nothing else. The API opens it on METRICS_PORT,
 * the worker on WORKER_METRICS_PORT; 0 means none. A port already in use is logged, not
 * fatal: serving orders and jobs matters more than their metrics.
 */
@Injectable()
export class MetricsListener implements OnApplicationShutdown {
  private readonly logger = new Logger(MetricsListener.name);
  private server?: Server;

  constructor(
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Resolves once listening, or once a failure to listen has been logged. */
  async listen(port: number): Promise<void> {
    if (port === 0 || this.server) return;
    const server = createServer((req, res) => {
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
    this.server = server;
    await new Promise<void>((resolve) => {
      server.once('listening', () => resolve());
      server.once('error', (err) => {
        this.logger.warn(`metrics not served on port ${port}: ${err.message}`);
        this.server = undefined;
        resolve();
      });
      server.listen(port, this.config.http.host);
    });
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
