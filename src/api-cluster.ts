import cluster, { type Worker } from 'node:cluster';
import { type Server, createServer } from 'node:http';
import pino from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { AppConfig } from './config/config';

/** A worker that dies is forked again after this long, doubling per recent death, up to the cap. */
const RESTART_DELAY_MS = 250;
const RESTART_DELAY_CAP_MS = 30_000;
/** Deaths older than this no longer slow restarts down. */
const RESTART_MEMORY_MS = 60_000;

/**
 * The primary of `API_PROCESSES` > 1 (node:cluster): it loads no application code, forks that
 * many API processes — each the whole app, sharing PORT (the primary accepts connections and
 * hands them out in turn) — and forks a replacement for any that dies, after a delay that
 * doubles with each death in the last minute (a crash loop does not spin). If the first
 * processes die before any of them ever listened (the database unreachable at boot, the port
 * taken), it stops and exits 1 rather than retrying forever.
 *
 * Metrics: the workers keep their registries (no metrics listener of their own); the primary
 * serves `GET /metrics` on METRICS_PORT with every worker's metrics summed (prom-client's
 * AggregatorRegistry), and `GET /health/live`.
 *
 * SIGTERM/SIGINT: no more forks; each worker gets SIGTERM and drains (closeOnSignals); the
 * primary exits 0 once all have exited, or 1 after SHUTDOWN_TIMEOUT_MS + 5 s (the rest killed).
 */
export async function runApiCluster(config: AppConfig): Promise<void> {
  const log = pino({ level: config.logLevel }).child({ context: 'ApiCluster' });
  const count = config.http.processes;
  let stopping = false;
  let everListened = false;
  const deaths: number[] = [];

  const fork = (): Worker => cluster.fork({ API_CLUSTER_WORKER: '1' });

  cluster.on('listening', () => {
    everListened = true;
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    if (!everListened) {
      log.fatal({ workerPid: worker.process.pid, code, signal }, 'API process died before serving; stopping');
      stop(1);
      return;
    }
    const now = Date.now();
    while (deaths.length > 0 && deaths[0] < now - RESTART_MEMORY_MS) deaths.shift();
    deaths.push(now);
    const delay = Math.min(RESTART_DELAY_CAP_MS, RESTART_DELAY_MS * 2 ** (deaths.length - 1));
    log.error({ workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'API process died; starting another');
    setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  });

  const metrics = await serveClusterMetrics(config, log);

  function stop(exitCode: number): void {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const force = setTimeout(() => {
      log.error('API processes still running after the shutdown timeout; killing them');
      for (const w of workers) w.process.kill('SIGKILL');
      process.exit(1);
    }, config.http.shutdownTimeoutMs + 5_000);
    force.unref();
    const exited = workers.map((w) =>
      w.isDead() ? Promise.resolve() : new Promise<void>((resolve) => w.once('exit', () => resolve())),
    );
    for (const w of workers) if (!w.isDead()) w.process.kill('SIGTERM');
    void Promise.all(exited).then(() => {
      metrics?.close();
      process.exit(exitCode);
    });
  }
  process.once('SIGTERM', () => stop(0));
  process.once('SIGINT', () => stop(0));

  log.info({ processes: count }, 'starting API processes');
  for (let i = 0; i < count; i++) fork();
}

/** True in an API process forked by runApiCluster. */
export function isApiClusterWorker(): boolean {
  return cluster.isWorker && process.env.API_CLUSTER_WORKER === '1';
}

/** In an API process of a cluster: its registry is what the primary's /metrics sums. */
export function shareMetricsWithPrimary(registry: Registry): void {
  new AggregatorRegistry(); // installs the worker's answer to the primary's requests
  AggregatorRegistry.setRegistries([registry]);
}

async function serveClusterMetrics(config: AppConfig, log: pino.Logger): Promise<Server | undefined> {
  if (config.metricsPort === 0) return undefined;
  const aggregate = new AggregatorRegistry();
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      aggregate.clusterMetrics().then(
        (text) => res.writeHead(200, { 'content-type': aggregate.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (req.method === 'GET' && req.url === '/health/live') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => {
    server.once('listening', () => resolve(server));
    server.once('error', (err) => {
      log.warn(`metrics not served on port ${config.metricsPort}: ${err.message}`);
      resolve(undefined);
    });
    server.listen(config.metricsPort, config.http.host);
  });
}
