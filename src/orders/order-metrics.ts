import { Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { TransactionHost } from '../database/transaction-host';
import { MetricsService } from '../metrics/metrics.service';
import type { OrderStatus } from './order-state-machine';

/** Business counters for /metrics, counted only for transactions that committed. */
@Injectable()
export class OrderMetrics {
  private readonly created: Counter<string>;
  private readonly transitions: Counter<'to'>;

  constructor(
    metrics: MetricsService,
    private readonly tx: TransactionHost,
  ) {
    this.created = metrics.counter('orders_created_total', 'Orders created (stock reserved)');
    this.transitions = metrics.counter(
      'order_transitions_total',
      'Order status changes by target status',
      ['to'],
    );
  }

  orderCreated(): void {
    this.tx.afterCommit(() => this.created.inc());
  }

  transitioned(to: OrderStatus): void {
    this.tx.afterCommit(() => this.transitions.inc({ to }));
  }
}
