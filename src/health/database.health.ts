import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { APP_CONFIG, AppConfig } from '../config/config';
import { BreakerState, DbCircuitBreaker } from '../database/db-circuit-breaker';
import { SideConnection } from '../database/side-connection';
import {
  READ_ONLY_DETAIL,
  TransactionHost,
  WRITABLE_PROBE,
  refuseReadOnly,
} from '../database/transaction-host';
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
 * pool and a statement of this process was answered in the last 2 s (breaker closed), one writability
 * probe (WRITABLE_PROBE: a standby or a read-only server is down; so is one that answered 25006 in
 * the last 2 s, with no probe) through the breaker, so while it is open the answer is "down" at once (no ping queues on the pool),
 * and once its wait has passed a readiness probe can be the half-open probe that closes it. Also publishes the
 * breaker state as a gauge (0 closed, 1 open, 2 half-open, 3 isolated).
 *
 * Callers queueing for the pool with no answer for 2 s (every connection a checkout waiting on a
 * hot row whose holder froze: up to the server's 15 s idle-in-transaction limit) is no outage
 * either: the probe then goes over a connection of its own, kept while the queue lasts
 * (SideConnection) — queued behind the checkouts it timed out, on every API process at once, and the
 * load balancer pulled them all while PostgreSQL answered. The same with every connection in use
 * and nobody queued yet (TransactionHost#poolExhausted): the probe itself queued, and timed out
 * (dbpressure review).
 */
@Injectable()
export class DatabaseHealthIndicator implements OnModuleInit, OnModuleDestroy {
  constructor(
    private readonly breaker: DbCircuitBreaker,
    private readonly tx: TransactionHost,
    private readonly indicator: HealthIndicatorService,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.side = new SideConnection(config.database.lockUrl, 'shop-orders/readiness');
  }

  /**
   * The probe's connection of its own while the pool has a queue (see the class comment): kept for
   * the next probes (a flood of them during a sale is one probe at a time — ReadinessService — and
   * would otherwise open a connection each), dropped once the pool has no queue again.
   */
  private readonly side: SideConnection;

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
    // a statement answered "read-only" lately (25006, which the breaker counts as an answer): down
    // with no probe — every write of this process fails while it lasts
    if (this.tx.readOnlyWithin(RECENT_ANSWER_MS)) {
      return check.down({ breaker: this.breaker.state, message: READ_ONLY_DETAIL });
    }
    if (this.tx.poolExhausted() && this.breaker.answeredWithin(RECENT_ANSWER_MS)) {
      return check.up({ breaker: this.breaker.state });
    }
    const queued = this.tx.poolExhausted() && this.breaker.state === 'closed';
    if (!queued) this.side.close();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        // whether the server takes writes, not just whether it answers: a standby (a failover left
        // the address on it) or a server set read-only answers `SELECT 1` while every transaction
        // fails (503) — the instance stayed in rotation
        queued
          ? this.side.selectOne(timeoutMs, WRITABLE_PROBE, refuseReadOnly)
          : this.tx.assertWritable(),
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

  onModuleDestroy(): void {
    this.side.close();
  }
}
