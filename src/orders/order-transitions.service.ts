import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { StockReservationService } from '../inventory/stock-reservation.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { CancellationReason, HOLDS_RESERVATION, OrderStatus } from './order-state-machine';
import { OrderRepository } from './order.repository';

export interface TransitionResult {
  changed: boolean;
  previous: OrderStatus | null;
}

/**
 * The one place order status changes. Each method is a guarded transition plus exactly the
 * side effects that belong to it (stock release or commit, outbox event), in one transaction:
 * whoever wins the guarded UPDATE does the effects; a loser or a retry changes nothing.
 */
@Injectable()
export class OrderTransitionsService {
  constructor(
    private readonly orders: OrderRepository,
    private readonly stock: StockReservationService,
    private readonly outbox: OutboxRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  /** Before PAID only. Releases the reserved stock exactly once. */
  cancel(
    orderId: string,
    reason: CancellationReason,
    actor: string,
    opts: { onlyIfReservationDue?: boolean } = {},
  ): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const now = this.clock.now();
      const previous = await this.orders.transition(orderId, {
        to: 'CANCELLED',
        reason,
        actor,
        at: now,
        reservationDueBy: opts.onlyIfReservationDue ? now : undefined,
      });
      if (!previous) return { changed: false, previous: null };
      if (HOLDS_RESERVATION.includes(previous)) await this.stock.release(orderId);
      await this.outbox.add('order.cancelled', orderId, { orderId, reason });
      return { changed: true, previous };
    });
  }

  /** INVENTORY_RESERVED → PAYMENT_PENDING, keeping the stock held at least until `holdUntil`. */
  markPaymentPending(orderId: string, holdUntil: Date, actor: string): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const previous = await this.orders.transition(orderId, {
        to: 'PAYMENT_PENDING',
        actor,
        at: this.clock.now(),
      });
      await this.orders.extendReservation(orderId, holdUntil);
      return { changed: previous !== null, previous };
    });
  }

  /** → PAID: the reservation becomes a sale (stock committed once), then the event. */
  markPaid(orderId: string, actor: string): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const previous = await this.orders.transition(orderId, {
        to: 'PAID',
        actor,
        at: this.clock.now(),
      });
      if (!previous) return { changed: false, previous: null };
      await this.stock.commit(orderId);
      await this.outbox.add('order.paid', orderId, { orderId });
      return { changed: true, previous };
    });
  }

  /** PAID → CONFIRMED. */
  confirm(orderId: string, actor: string): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const previous = await this.orders.transition(orderId, {
        to: 'CONFIRMED',
        actor,
        at: this.clock.now(),
      });
      if (!previous) return { changed: false, previous: null };
      await this.outbox.add('order.confirmed', orderId, { orderId });
      return { changed: true, previous };
    });
  }

  /**
   * Records a refund of `amount` (→ REFUNDED or PARTIALLY_REFUNDED). Returns false when the
   * order is not refundable or the amount exceeds what remains (nothing changes then).
   */
  applyRefund(orderId: string, refundId: string, amount: number, actor: string): Promise<boolean> {
    return this.tx.run(async () => {
      const applied = await this.orders.applyRefund(orderId, amount, actor, this.clock.now());
      if (!applied) return false;
      await this.outbox.add('order.refunded', orderId, { orderId, refundId });
      return true;
    });
  }

  /** CONFIRMED → FULFILLED (admin). */
  fulfil(orderId: string, actor: string): Promise<TransitionResult> {
    return this.tx.run(async () => {
      const previous = await this.orders.transition(orderId, {
        to: 'FULFILLED',
        actor,
        at: this.clock.now(),
      });
      if (!previous) return { changed: false, previous: null };
      await this.outbox.add('order.fulfilled', orderId, { orderId });
      return { changed: true, previous };
    });
  }
}
