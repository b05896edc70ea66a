import { Inject, Injectable } from '@nestjs/common';
import { IdGenerator } from '../common/ids';
import { logOrder } from '../common/logging/order-log';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { GatewayError, GatewayIntent, PAYMENT_GATEWAY, PaymentGateway, gatewayKeys } from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';
import { RefundsService } from './refunds.service';
import { WebhookEventRepository } from './webhook-event.repository';

const ACTOR = 'system:payments';
/** A pending payment without news for this long is checked against the gateway. */
export const RECONCILE_AFTER_MS = 10 * 60 * 1000;
/** A refund still pending this long after its last provider call is sent again (same key). */
export const RETRY_REFUND_AFTER_MS = 60 * 1000;

/**
 * Acts on a webhook event by re-reading the intent from the gateway (events can be late, stale,
 * duplicated or out of order) and moving the order to match: succeeded → PAID (stock committed
 * once) → CONFIRMED, or an automatic refund when the order was already cancelled; a declined or
 * canceled intent → CANCELLED (PAYMENT_FAILED, stock released once). Every step is a guarded
 * transition or carries a deterministic provider key, so a rerun after a crash at any point
 * converges to the same result.
 */
@Injectable()
export class PaymentFinalizer {
  constructor(
    private readonly payments: PaymentRepository,
    private readonly events: WebhookEventRepository,
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    private readonly refunds: RefundsService,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
  ) {}

  async processEvent(eventId: string): Promise<string> {
    const event = await this.events.find(eventId);
    if (!event) return 'unknown-event';
    const payment = event.intentId
      ? ((await this.payments.findByIntent(event.intentId)) ?? (await this.adopt(event.intentId)))
      : null;
    if (!payment) {
      await this.events.markProcessed(eventId, this.clock.now());
      return 'no-payment';
    }
    if (event.type === 'charge.refunded' || event.type.startsWith('charge.refund.') || event.type.startsWith('refund.')) {
      await this.refunds.syncFromGateway(payment);
      await this.events.markProcessed(eventId, this.clock.now());
      return 'refunds-synced';
    }
    return this.converge(payment, eventId);
  }

  /**
   * The safety net for webhooks that never arrive: payments whose order has been
   * PAYMENT_PENDING without news for `staleMs` are settled from the gateway's current state,
   * and refunds whose provider call never got an answer are sent again.
   */
  async reconcile(staleMs = RECONCILE_AFTER_MS): Promise<number> {
    const stale = await this.payments.findStale(
      await this.orders.findIdsInStatus('PAYMENT_PENDING'),
      new Date(this.clock.now().getTime() - staleMs),
    );
    let settled = 0;
    for (const payment of stale) {
      if ((await this.converge(payment)) !== 'pending') settled++;
    }
    return settled + (await this.refunds.retryStale(RETRY_REFUND_AFTER_MS));
  }

  /**
   * The order was cancelled (by the customer, expiry or a failed payment): its intent is
   * cancelled at the gateway so it can no longer be paid. If the customer paid just before,
   * the gateway says succeeded and the payment is converged — refunded automatically.
   */
  async cancelIntentOf(orderId: string): Promise<string> {
    const payment = await this.payments.findByOrder(orderId);
    if (!payment || payment.status === 'succeeded' || payment.status === 'canceled') return 'nothing-to-cancel';
    const intent = await this.gateway.cancelIntent(payment.intentId, gatewayKeys.cancelIntent(orderId));
    if (intent.status === 'succeeded') return this.converge(payment);
    await this.payments.setStatus(payment.id, intent.status, this.clock.now());
    return intent.status;
  }

  /**
   * An event for an intent we have not recorded yet: the webhook overtook the payment call's
   * own commit (or that call died after creating the intent). The intent's metadata names the
   * order, so the payment is recorded from the gateway's truth (unique per order: the payment
   * call, when it commits, finds this one).
   */
  private async adopt(intentId: string): Promise<Payment | null> {
    let intent: GatewayIntent;
    try {
      intent = await this.gateway.retrieveIntent(intentId);
    } catch (err) {
      if (err instanceof GatewayError && err.kind === 'rejected') return null; // not ours / unknown
      throw err;
    }
    if (!intent.orderId || !(await this.orders.findById(intent.orderId))) return null;
    return this.payments.recordIntent(this.ids.uuid(), this.gateway.provider, intent, this.clock.now());
  }

  /** Re-reads the intent (outside any transaction) and moves the order to match. */
  private async converge(payment: Payment, eventId?: string): Promise<string> {
    let intent = await this.gateway.retrieveIntent(payment.intentId);
    if (intent.status === 'requires_payment_method' && intent.lastError) {
      // A declined attempt cancels the order (API.md), so the intent is cancelled first: a
      // payment racing this cancel wins at the gateway, and the answer says succeeded.
      intent = await this.gateway.cancelIntent(intent.id, gatewayKeys.cancelIntent(payment.orderId));
    }
    const status = intent.status;
    const outcome = await this.tx.run(async () => {
      await this.payments.setStatus(payment.id, status, this.clock.now());
      let result = 'pending';
      if (status === 'succeeded') {
        await this.transitions.markPaid(payment.orderId, ACTOR);
        const order = await this.orders.findById(payment.orderId);
        if (order?.status === 'PAID') await this.transitions.confirm(payment.orderId, ACTOR);
        result = order?.status === 'CANCELLED' ? 'paid-after-cancel' : 'confirmed';
      } else if (status === 'canceled') {
        await this.transitions.cancel(payment.orderId, 'PAYMENT_FAILED', ACTOR);
        result = 'cancelled';
      }
      if (eventId) await this.events.markProcessed(eventId, this.clock.now());
      return result;
    });
    logOrder({
      orderId: payment.orderId,
      action: 'payment.converged',
      paymentStatus: status,
      outcome,
      intentId: payment.intentId,
      eventId,
    });
    if (outcome === 'paid-after-cancel') {
      await this.refunds.refundPaidAfterCancel({ ...payment, status });
      return 'refunded-after-cancel';
    }
    return outcome;
  }
}
