import { Injectable, OnModuleInit } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
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
 */
@Injectable()
export class DatabaseHealthIndicator implements OnModuleInit {
  constructor(
    private readonly breaker: DbCircuitBreaker,
    private readonly tx: TransactionHost,
    private readonly indicator: HealthIndicatorService,
    private readonly metrics: MetricsService,
  ) {}

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
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.tx.query('SELECT 1'),
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
}
