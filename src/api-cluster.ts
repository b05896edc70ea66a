import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import pino from 'pino';
import { AggregatorRegistry, Counter, Gauge, type Registry } from 'prom-client';
import type { AppConfig } from './config/config';
import { EXIT_CONFIG } from './config/exit-codes';
import { serveMetrics } from './metrics/metrics-http';

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
 * taken), it stops and exits 1 rather than retrying forever; one refused by its configuration
 * (exit code 78) stops it with 78 once no other process serves.
 *
 * Metrics: the workers keep their registries (no metrics listener of their own); the primary
 * serves `GET /metrics` on METRICS_PORT with every worker's metrics summed (prom-client's
 * AggregatorRegistry.aggregate; see clusterMetricsCollector), and `GET /health/live`.
 *
 * SIGTERM/SIGINT: no more forks; each worker gets SIGTERM and drains (closeOnSignals); the
 * primary exits 0 once all have exited cleanly, 1 if one that had served did not (killed,
 * crashed, or a failed shutdown of its own; one still booting has nothing to lose), or 1 after SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS + 5 s (the rest killed).
 */
export async function runApiCluster(config: AppConfig): Promise<void> {
  const log = pino({ level: config.logLevel }).child({ context: 'ApiCluster' });
  const count = config.http.processes;
  let stopping = false;
  let everListened = false;
  const deaths: number[] = [];
  /** Processes that died after serving began and were replaced (api_process_deaths_total). */
  let replaced = 0;

  const fork = (): Worker => cluster.fork({ API_CLUSTER_WORKER: '1' });

  /** Processes that have served (started listening): only their stop can cut requests off. */
  const served = new WeakSet<Worker>();
  cluster.on('listening', (worker) => {
    everListened = true;
    served.add(worker);
    log.info({ workerPid: worker.process.pid }, 'API process serving');
  });
  /**
   * Whether a process other than `dead` is alive and has served. A replacement refused by its
   * configuration while its siblings still serve is one whose server changed under the fleet — a
   * database or Redis password rotated on the server: the running processes keep their signed-in
   * connections — and is replaced (after the backoff) rather than stopping the fleet that serves.
   * A refusal all of them meet (the prefix taken by another deployment) stops the last one too.
   */
  const othersServing = (dead: Worker): boolean =>
    Object.values(cluster.workers ?? {}).some(
      (w) => w !== undefined && w !== dead && !w.isDead() && served.has(w),
    );
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    if (code === EXIT_CONFIG && !othersServing(worker)) {
      // stopped by its configuration (REDIS_KEY_PREFIX held for another database, a server that
      // refuses its credentials) with no process left serving: another would be refused the same
      // way, for ever
      log.fatal(
        { workerPid: worker.process.pid, code },
        'API process refused by its configuration; stopping',
      );
      stop(EXIT_CONFIG);
      return;
    }
    if (!everListened) {
      log.fatal(
        { workerPid: worker.process.pid, code, signal },
        'API process died before serving; stopping',
      );
      stop(1);
      return;
    }
    const now = Date.now();
    while (deaths.length > 0 && deaths[0] < now - RESTART_MEMORY_MS) deaths.shift();
    deaths.push(now);
    replaced++;
    const delay = Math.min(RESTART_DELAY_CAP_MS, RESTART_DELAY_MS * 2 ** (deaths.length - 1));
    log.error(
      { workerPid: worker.process.pid, code, signal, restartInMs: delay },
      code === EXIT_CONFIG
        ? 'API process refused by its configuration (its servers refuse what the others signed in with?) while others serve; starting another'
        : 'API process died; starting another',
    );
    setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  });

  const metrics = await serveClusterMetrics(config, log, {
    configured: count,
    deaths: () => replaced,
  });

  function stop(exitCode: number): void {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter(
      (w): w is Worker => w !== undefined,
    );
    const force = setTimeout(
      () => {
        log.error('API processes still running after the shutdown timeout; killing them');
        for (const w of workers) w.process.kill('SIGKILL');
        process.exit(1);
      },
      config.http.shutdownDelayMs + config.http.shutdownTimeoutMs + 5_000,
    ); // as long as the processes' own bound
    force.unref();
    // a process that served and did not drain cleanly (killed, crashed, its own shutdown failed)
    // makes the primary's exit code 1: a supervisor must not read a stop that cut requests off as
    // clean. One still booting (a replacement) has nothing in flight: its signal death is no news.
    const unclean: { pid?: number; code: number | null; signal: string | null }[] = [];
    const exited = workers.map((w) =>
      w.isDead()
        ? Promise.resolve()
        : new Promise<void>((resolve) =>
            w.once('exit', (code: number | null, signal: string | null) => {
              // (a sibling stopped by its configuration as well: no drain was cut)
              if (((code !== 0 && code !== EXIT_CONFIG) || signal) && served.has(w))
                unclean.push({ pid: w.process.pid, code, signal });
              resolve();
            }),
          ),
    );
    for (const w of workers) if (!w.isDead()) w.process.kill('SIGTERM');
    void Promise.all(exited).then(() => {
      metrics?.close();
      if (unclean.length > 0)
        log.error({ processes: unclean }, 'API processes did not stop cleanly');
      process.exit(unclean.length > 0 ? 1 : exitCode);
    });
  }
  // `on`: a second signal while the API processes drain is ignored (see closeOnSignals)
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));

  log.info({ processes: count }, 'starting API processes');
  for (let i = 0; i < count; i++) fork();
}

/** True in an API process forked by runApiCluster. */
export function isApiClusterWorker(): boolean {
  return cluster.isWorker && process.env.API_CLUSTER_WORKER === '1';
}

/**
 * Metrics between the processes (built on prom-client's AggregatorRegistry.aggregate, which sums
 * counters and histograms and applies each gauge's aggregator). prom-client's own clusterMetrics()
 * asks every forked process and fails the whole scrape after 5 s if one does not answer — which a
 * replacement still booting cannot (a message sent before its listener exists is lost). So each
 * process says READY once its app is up, and the primary asks only those.
 */
const METRICS_READY = 'shop:metrics-ready';
const METRICS_REQUEST = 'shop:metrics-request';
const METRICS_ANSWER = 'shop:metrics-answer';
/** A process that is ready but does not answer within this long is left out of the scrape (cluster_metrics_missing_processes). */
const METRICS_ANSWER_TIMEOUT_MS = 5_000;

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
type MetricsMessage =
  | { type: typeof METRICS_READY }
  | { type: typeof METRICS_REQUEST; id: number }
  | { type: typeof METRICS_ANSWER; id: number; metrics: MetricsJson };

const isMetricsMessage = (m: unknown): m is MetricsMessage =>
  typeof m === 'object' &&
  m !== null &&
  typeof (m as { type?: unknown }).type === 'string' &&
  (m as { type: string }).type.startsWith('shop:metrics-');

/**
 * In an API process of a cluster, once the app is up: answer the primary's metrics requests with
 * this registry, then tell it so. Not earlier: a booting process blocks its event loop for seconds
 * at a time (loading modules) and has nothing to report yet.
 */
export function shareMetricsWithPrimary(registry: Registry): void {
  process.on('message', (m: unknown) => {
    if (!isMetricsMessage(m) || m.type !== METRICS_REQUEST) return;
    void registry.getMetricsAsJSON().then(
      (metrics) =>
        process.send?.({ type: METRICS_ANSWER, id: m.id, metrics } satisfies MetricsMessage),
      () => undefined, // no answer: the primary's scrape fails after its timeout
    );
  });
  process.send?.({ type: METRICS_READY } satisfies MetricsMessage);
}

/**
 * What the primary itself knows of its processes: how many it runs, and how many died and were
 * replaced — a process in a crash loop (an OOM, a throw on some input) resets its requests at each
 * death, yet readiness and liveness, answered by whichever process the primary hands them to,
 * stay 200: this is what an alert can watch.
 */
interface ProcessCounts {
  configured: number;
  deaths(): number;
}

/** The primary's side: which processes answer, and one scrape of them all, summed. */
function clusterMetricsCollector(counts: ProcessCounts): { scrape(): Promise<string> } {
  const ready = new Set<Worker>();
  const waiting = new Map<number, { worker: Worker; resolve(m: MetricsJson): void }>();
  /** Each live process's last answer: stands in for it in a scrape it does not answer. */
  const last = new Map<Worker, MetricsJson>();
  /**
   * The counters and histograms of processes that died, as they last answered: still summed, so
   * a death or a missed answer never makes a counter go down (which Prometheus takes for a
   * reset, counting everything the other processes ever served as new). Their gauges go.
   */
  let retired: MetricsJson[] = [];
  let nextId = 0;
  cluster.on('message', (worker, m: unknown) => {
    if (!isMetricsMessage(m)) return;
    if (m.type === METRICS_READY) ready.add(worker);
    else if (m.type === METRICS_ANSWER) waiting.get(m.id)?.resolve(m.metrics);
  });
  cluster.on('exit', (worker) => {
    ready.delete(worker);
    const lastAnswer = last.get(worker);
    last.delete(worker);
    // (the JSON's type is the metric type's name, though prom-client declares it an enum)
    if (lastAnswer)
      retired.push(lastAnswer.filter((metric) => (metric.type as unknown) !== 'gauge'));
    // a process that died answers no more: the scrape goes on with what it last said
    for (const w of waiting.values()) if (w.worker === worker) w.resolve([]);
  });
  const ask = (worker: Worker): Promise<MetricsJson> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`API process ${worker.process.pid} did not answer for metrics`));
      }, METRICS_ANSWER_TIMEOUT_MS);
      waiting.set(id, {
        worker,
        resolve: (metrics) => {
          clearTimeout(timer);
          waiting.delete(id);
          // kept at once, before an exit of the process can retire what it said last
          if (metrics.length > 0 && ready.has(worker)) last.set(worker, metrics);
          resolve(metrics);
        },
      });
      worker.send({ type: METRICS_REQUEST, id } satisfies MetricsMessage);
    });
  return {
    /**
     * Every process's metrics, summed: one that does not answer (frozen, overloaded — when an
     * operator needs the figures most) no longer fails the whole scrape with a 500, and is summed
     * as it last answered (`cluster_metrics_missing_processes` says how many), as are the
     * counters of processes that died.
     */
    async scrape() {
      const asked = [...ready].filter((w) => w.isConnected());
      const settled = await Promise.allSettled(asked.map(ask));
      const answered = settled.filter((r) => r.status === 'fulfilled' && r.value.length > 0).length;
      if (retired.length > 1)
        retired = [await AggregatorRegistry.aggregate(retired).getMetricsAsJSON()];
      // each live process once, as it last answered (now, or before if it did not now), and the
      // processes that died once, in `retired` (one that died during this scrape is there, with
      // its answer if it gave one: never in both)
      const live = [...ready].flatMap((w) => {
        const figures = last.get(w);
        return figures ? [figures] : [];
      });
      const registry = AggregatorRegistry.aggregate([...live, ...retired]);
      new Gauge({
        name: 'cluster_metrics_processes',
        help: 'API processes whose figures this scrape sums',
        registers: [registry],
      }).set(answered);
      new Gauge({
        name: 'cluster_metrics_missing_processes',
        help: 'API processes that did not answer this scrape (summed as they last answered, if ever)',
        registers: [registry],
      }).set(asked.length - answered);
      new Gauge({
        name: 'api_processes_configured',
        help: 'API processes the primary runs (API_PROCESSES)',
        registers: [registry],
      }).set(counts.configured);
      new Counter({
        name: 'api_process_deaths_total',
        help: 'API processes that died after serving began and were replaced (a crash loop: alert on its rate)',
        registers: [registry],
      }).inc(counts.deaths());
      return registry.metrics();
    },
  };
}

function serveClusterMetrics(
  config: AppConfig,
  log: pino.Logger,
  counts: ProcessCounts,
): Promise<Server | undefined> {
  if (config.metricsPort === 0) return Promise.resolve(undefined);
  const collector = clusterMetricsCollector(counts);
  return serveMetrics(
    config.metricsPort,
    config.metricsHost,
    () => collector.scrape(),
    (m) => log.warn(m),
  );
}
