import { Injectable } from '@nestjs/common';
import { logOrder } from '../common/logging/order-log';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { StockReservationService } from '../inventory/stock-reservation.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { CancellationReason, HOLDS_RESERVATION, OrderStatus } from './order-state-machine';
import { OrderMetrics } from './order-metrics';
import { OrderRepository } from './order.repository';

export interface TransitionResult {
  changed: boolean;
  previous: OrderStatus | null;
}

/**
 * The one place order status changes. Each method is a guarded transition plus exactly the
 * side effects that belong to it (stock release or commit, outbox event), in one transaction:
 * whoever wins the guarded UPDATE does the effects; a loser or a retry changes nothing.
 * Each change is logged (logOrder, `action: 'transition'`) once its transaction has committed.
 */
@Injectable()
export class OrderTransitionsService {
  constructor(
    private readonly orders: OrderRepository,
    private readonly stock: StockReservationService,
    private readonly outbox: OutboxRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly metrics: OrderMetrics,
  ) {}

  /** Before PAID only. Releases the reserved stock exactly once. */
  cancel(
    orderId: string,
    reason: CancellationReason,
    actor: string,
    opts: { onlyIfReservationDue?: boolean; onlyIfNoOpenPayment?: boolean } = {},
  ): Promise<TransitionResult> {
    return this.move(
      orderId,
      {
        to: 'CANCELLED',
        reason,
        actor,
        dueOnly: opts.onlyIfReservationDue,
        noOpenPayment: opts.onlyIfNoOpenPayment,
      },
      async (previous) => {
        if (HOLDS_RESERVATION.includes(previous)) await this.stock.release(orderId);
        await this.outbox.add('order.cancelled', orderId, { orderId, reason });
      },
    );
  }

  /**
   * INVENTORY_RESERVED → PAYMENT_PENDING — only while the reservation's deadline has not passed:
   * an overdue order is the expiry's, never revived. The deadline stays where it is (API.md: an
   * unpaid reservation is released after the configured window, payment started or not).
   */
  markPaymentPending(orderId: string, actor: string): Promise<TransitionResult> {
    return this.move(orderId, { to: 'PAYMENT_PENDING', actor, liveOnly: true });
  }

  /**
   * → PAID: the reservation becomes a sale (stock committed once), then the event. A success that
   * overtook the pending step (the webhook beat the payment call's commit) takes that step first,
   * recorded in the history: the lifecycle has no INVENTORY_RESERVED → PAID (API.md). The step
   * has no deadline guard here — the customer has paid — as PAYMENT_PENDING → PAID has none.
   */
  markPaid(orderId: string, actor: string): Promise<TransitionResult> {
    return this.tx.run(async () => {
      await this.move(orderId, { to: 'PAYMENT_PENDING', actor });
      return this.move(orderId, { to: 'PAID', actor }, async () => {
        await this.stock.commit(orderId);
        await this.outbox.add('order.paid', orderId, { orderId });
      });
    });
  }

  /** PAID → CONFIRMED. */
  confirm(orderId: string, actor: string): Promise<TransitionResult> {
    return this.move(orderId, { to: 'CONFIRMED', actor }, () =>
      this.outbox.add('order.confirmed', orderId, { orderId }).then(() => undefined),
    );
  }

  /**
   * CONFIRMED → FULFILLED (admin), while no refund of the order pending would return its whole
   * total and no dispute of its payment is open or lost.
   */
  fulfil(orderId: string, actor: string): Promise<TransitionResult> {
    return this.move(
      orderId,
      { to: 'FULFILLED', actor, noRefundPending: true, noDispute: true },
      () => this.outbox.add('order.fulfilled', orderId, { orderId }).then(() => undefined),
    );
  }

  /**
   * Records a refund of `amount` (→ REFUNDED or PARTIALLY_REFUNDED). Returns false when the
   * order is not refundable or the amount exceeds what remains (nothing changes then).
   */
  applyRefund(orderId: string, refundId: string, amount: number, actor: string): Promise<boolean> {
    return this.tx.run(async () => {
      const applied = await this.orders.applyRefund(orderId, amount, actor, this.clock.now());
      if (!applied) return false;
      this.tx.afterCommit(() =>
        logOrder({
          orderId,
          action: 'refund.applied',
          to: applied.status,
          refundId,
          amount,
          actor,
        }),
      );
      if (applied.status === 'REFUNDED' && applied.previous !== 'REFUNDED')
        await this.stock.uncountSale(orderId);
      await this.outbox.add('order.refunded', orderId, { orderId, refundId });
      return true;
    });
  }

  /** A refund the provider reversed, taken off the order's refunded amount (its status stays). */
  withdrawRefund(
    orderId: string,
    refundId: string,
    amount: number,
    actor: string,
  ): Promise<boolean> {
    return this.tx.run(async () => {
      const status = await this.orders.withdrawRefund(orderId, amount, actor, this.clock.now());
      if (!status) return false;
      this.tx.afterCommit(() =>
        logOrder({ orderId, action: 'refund.reversed', to: status, refundId, amount, actor }),
      );
      return true;
    });
  }

  /** The guarded UPDATE, then — only for the winner — the transition's side effects. */
  private move(
    orderId: string,
    t: {
      to: OrderStatus;
      actor: string;
      reason?: CancellationReason;
      dueOnly?: boolean;
      liveOnly?: boolean;
      noOpenPayment?: boolean;
      noRefundPending?: boolean;
      noDispute?: boolean;
    },
    effects?: (previous: OrderStatus) => Promise<void>,
  ): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const now = this.clock.now();
      const previous = await this.orders.transition(orderId, {
        to: t.to,
        reason: t.reason,
        actor: t.actor,
        at: now,
        reservationDue: t.dueOnly,
        reservationLive: t.liveOnly,
        noOpenPayment: t.noOpenPayment,
        noRefundPending: t.noRefundPending,
        noDispute: t.noDispute,
      });
      if (!previous) return { changed: false, previous: null };
      await effects?.(previous);
      this.metrics.transitioned(t.to);
      this.tx.afterCommit(() =>
        logOrder({
          orderId,
          action: 'transition',
          from: previous,
          to: t.to,
          reason: t.reason,
          actor: t.actor,
        }),
      );
      return { changed: true, previous };
    });
  }
}
