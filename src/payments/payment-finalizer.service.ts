import { Inject, Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { PAYMENT_GATEWAY, PaymentGateway } from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';

const ACTOR = 'system:payments';
/** A pending payment without news for this long is checked against the gateway. */
export const RECONCILE_AFTER_MS = 10 * 60 * 1000;

/**
 * Acts on a webhook event by re-reading the intent from the gateway (events can be late, stale,
 * duplicated or out of order) and moving the order to match: succeeded → PAID (stock committed
 * once) → CONFIRMED; canceled → CANCELLED (PAYMENT_FAILED, stock released once). Every step is a
 * guarded transition, so a rerun after a crash at any point converges to the same result.
 */
@Injectable()
export class PaymentFinalizer {
  private readonly logger = new Logger(PaymentFinalizer.name);

  constructor(
    private readonly payments: PaymentRepository,
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  async processEvent(eventId: string): Promise<string> {
    const event = await this.payments.findEvent(eventId);
    if (!event) return 'unknown-event';
    const payment = event.intentId ? await this.payments.findByIntent(event.intentId) : null;
    if (!payment) {
      await this.payments.markEventProcessed(eventId, this.clock.now());
      return 'no-payment';
    }
    return this.converge(payment, eventId);
  }

  /**
   * The safety net for webhooks that never arrive: payments whose order has been
   * PAYMENT_PENDING without news for `staleMs` are settled from the gateway's current state.
   */
  async reconcile(staleMs = RECONCILE_AFTER_MS): Promise<number> {
    const stale = await this.payments.findStalePending(new Date(this.clock.now().getTime() - staleMs));
    let settled = 0;
    for (const payment of stale) {
      if ((await this.converge(payment)) !== 'pending') settled++;
    }
    return settled;
  }

  /** Re-reads the intent (outside any transaction) and moves the order to match. */
  private async converge(payment: Payment, eventId?: string): Promise<string> {
    const intent = await this.gateway.retrieveIntent(payment.intentId);
    const outcome = await this.tx.run(async () => {
      await this.payments.setStatus(payment.id, intent.status, this.clock.now());
      let result = 'pending';
      if (intent.status === 'succeeded') {
        await this.transitions.markPaid(payment.orderId, ACTOR);
        const order = await this.orders.findById(payment.orderId);
        if (order?.status === 'PAID') await this.transitions.confirm(payment.orderId, ACTOR);
        result = order?.status === 'CANCELLED' ? 'paid-after-cancel' : 'confirmed';
      } else if (intent.status === 'canceled') {
        await this.transitions.cancel(payment.orderId, 'PAYMENT_FAILED', ACTOR);
        result = 'cancelled';
      }
      if (eventId) await this.payments.markEventProcessed(eventId, this.clock.now());
      return result;
    });
    if (outcome === 'paid-after-cancel') {
      // Needs an automatic refund (not built yet): loud, so an operator acts on it.
      this.logger.error(`payment ${payment.intentId} succeeded for cancelled order ${payment.orderId}: refund required`);
    }
    return outcome;
  }
}
