import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { Client } from 'pg';
import { APP_CONFIG, AppConfig } from '../config/config';
import { BreakerState, DbCircuitBreaker } from '../database/db-circuit-breaker';
import { TransactionHost } from '../database/transaction-host';
import { MetricsService } from '../metrics/metrics.service';

const GAUGE_VALUE: Record<BreakerState, number> = {
  closed: 0,
  open: 1,
  'half-open': 2,
  isolated: 3,
};

/** A statement answered this recently (breaker closed) counts as "PostgreSQL answers" for readiness. */
const RECENT_ANSWER_MS = 2000;

/**
 * PostgreSQL readiness with the circuit breaker's state in the detail: unless callers queue for the
 * pool and a statement of this process was answered in the last 2 s (breaker closed), one `SELECT 1` through
 * the breaker, so while it is open the answer is "down" at once (no ping queues on the pool),
 * and once its wait has passed a readiness probe can be the half-open probe that closes it. Also publishes the
 * breaker state as a gauge (0 closed, 1 open, 2 half-open, 3 isolated).
 *
 * Callers queueing for the pool with no answer for 2 s (every connection a checkout waiting on a
 * hot row whose holder froze: up to the server's 15 s idle-in-transaction limit) is no outage
 * either: the `SELECT 1` then goes over a connection of its own, kept while the queue lasts
 * (`sideProbe`) — queued behind the checkouts it timed out, on every API process at once, and the
 * load balancer pulled them all while PostgreSQL answered.
 */
@Injectable()
export class DatabaseHealthIndicator implements OnModuleInit, OnModuleDestroy {
  constructor(
    private readonly breaker: DbCircuitBreaker,
    private readonly tx: TransactionHost,
    private readonly indicator: HealthIndicatorService,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The side probe's connection, while the pool has a queue (sideProbe). */
  private side?: Promise<Client>;

  onModuleInit(): void {
    const breaker = this.breaker;
    this.metrics.gauge(
      'db_circuit_breaker_state',
      'Database circuit breaker: 0 closed, 1 open, 2 half-open, 3 isolated',
      [],
      function () {
        this.set(GAUGE_VALUE[breaker.state]);
      },
    );
  }

  async isHealthy(key: string, timeoutMs = 1500): Promise<HealthIndicatorResult> {
    const check = this.indicator.check(key);
    // a pool with a queue, answering this process's statements right now: up, with no probe
    // queued behind the others (a sale's pool queue is no reason for a load balancer to pull
    // every instance at once); an idle pool is probed (at once: nothing to wait behind)
    if (this.tx.poolWaiting() > 0 && this.breaker.answeredWithin(RECENT_ANSWER_MS)) {
      return check.up({ breaker: this.breaker.state });
    }
    const queued = this.tx.poolWaiting() > 0 && this.breaker.state === 'closed';
    if (!queued) this.closeSideProbe();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        queued ? this.sideProbe(timeoutMs) : this.tx.query('SELECT 1'),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      return check.up({ breaker: this.breaker.state });
    } catch (err) {
      const message = err instanceof Error ? err.message : 'unreachable';
      return check.down({ breaker: this.breaker.state, message });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One `SELECT 1` on a connection of its own, not the pool's (see the class comment): opened at the
   * first such probe and kept for the next ones (a flood of probes during a sale is one probe at a
   * time — HealthController — and would otherwise open a connection each), dropped on a failure and
   * once the pool has no queue again (closeSideProbe).
   */
  private async sideProbe(timeoutMs: number): Promise<void> {
    this.side ??= (async () => {
      const client = new Client({
        // the lock sessions' endpoint: PostgreSQL itself or a session-mode pool — behind a
        // transaction-mode PgBouncer (DATABASE_URL) the probe would wait for a server connection
        // the checkouts hold, as it did in the pool
        connectionString: this.config.database.lockUrl,
        application_name: 'shop-orders/readiness',
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
      });
      client.on('error', () => this.closeSideProbe(client));
      client.on('end', () => this.closeSideProbe(client));
      await client.connect();
      return client;
    })();
    const side = this.side;
    try {
      await (await side).query('SELECT 1');
    } catch (err) {
      this.closeSideProbe(await side.catch(() => undefined));
      throw err;
    }
  }

  private closeSideProbe(which?: Client): void {
    const side = this.side;
    if (!side) return;
    void side.then(
      (client) => {
        if (which && client !== which) return;
        if (this.side === side) this.side = undefined;
        client.end().catch(() => undefined);
      },
      () => {
        if (this.side === side) this.side = undefined;
      },
    );
  }

  onModuleDestroy(): void {
    this.closeSideProbe();
  }
}
