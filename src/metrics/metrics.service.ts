import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The longest a gauge's scrape-time read (Redis queue depths, the outbox count) may hold up a
 * scrape: past it the gauge is left out of this page and the rest is served. A stalled Redis or a
 * pool with a queue used to hold the whole page past Prometheus' scrape timeout — the target went
 * `up 0`, taking the breaker state and the HTTP latencies with it, when they were needed most.
 */
export const COLLECT_TIMEOUT_MS = 1_000;

/**
 * Owns this process's Prometheus registry. Features register their own business counters
 * through `counter()` / `gauge()` so every metric lives in one registry.
 */
@Injectable()
export class MetricsService implements OnApplicationShutdown {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
  }

  /**
   * Lets go of every metric once the application is closed. prom-client's default metrics keep
   * the registry for good — a `PerformanceObserver` of GCs that nothing disconnects, an event-loop
   * delay monitor — and the registry holds each gauge's collect function, and through it the
   * services it reads (the database's breaker, the prefix claim): every closed application of a
   * process stayed in memory, its monitor's 10 ms timer running (each test file's apps in a jest
   * worker, ~15 MB a file). Cleared, they hold an empty registry.
   */
  onApplicationShutdown(): void {
    this.registry.clear();
  }

  counter<L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    const existing = this.registry.getSingleMetric(name);
    if (existing) return existing as Counter<L>;
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    collect?: (this: Gauge<L>) => Promise<void> | void,
  ): Gauge<L> {
    const existing = this.registry.getSingleMetric(name);
    if (existing) return existing as Gauge<L>;
    // With several API processes (API_PROCESSES) the primary sums their metrics; a gauge here
    // reads shared state (queue depths, the outbox) or a worst-of state (the breaker): the max.
    return new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect: collect && boundedCollect(collect, labelNames.length === 0),
      aggregator: 'max',
    });
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * `collect`, answering within COLLECT_TIMEOUT_MS: a read still running then is left to finish;
 * this page has none of the gauge's samples rather than stale ones. A collect that reads in-process
 * state (no promise) is just run. (`reset()` leaves a gauge without labels one sample, 0 — for an
 * age, "nothing waiting" — so such a gauge's sample is removed too.)
 */
function boundedCollect<L extends string>(
  collect: (this: Gauge<L>) => Promise<void> | void,
  labelless: boolean,
): (this: Gauge<L>) => Promise<void> | void {
  return function (this: Gauge<L>) {
    const reading = collect.call(this);
    if (!(reading instanceof Promise)) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), COLLECT_TIMEOUT_MS);
      timer.unref();
    });
    return Promise.race([reading, late])
      .then((outcome) => {
        if (outcome !== 'late') return;
        this.reset();
        if (labelless) this.remove();
      })
      .finally(() => clearTimeout(timer));
  };
}
