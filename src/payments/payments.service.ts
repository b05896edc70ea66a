import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { ProductRepository } from '../catalog/product.repository';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { PRODUCT_WITHDRAWN_ACTOR, UNCHARGEABLE_TOTAL_ACTOR } from '../orders/order-state-machine';
import {
  CallBudget,
  GatewayError,
  PAYMENT_GATEWAY,
  PaymentGateway,
  budgetOf,
  gatewayKeys,
} from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';
import { ShopIdentity } from './shop-identity';

export interface PaymentIntentView {
  paymentIntentId: string;
  clientSecret: string;
  status: string;
  amount: { amount: number; currency: string };
}

const view = (p: Payment): PaymentIntentView => ({
  paymentIntentId: p.intentId,
  clientSecret: p.clientSecret,
  status: p.status,
  amount: { amount: p.amount, currency: p.currency },
});

/** Starting a payment: one intent per order, whatever retries and double clicks do. */
const reservationExpired = () =>
  new DomainError(
    'ORDER_NOT_PAYABLE',
    "The order's reservation has expired; it can no longer be paid.",
  );

/**
 * What a payment start's closing cancel (the order cancelled or expired while its intent was
 * made) may wait on the provider, beside the start's own budget. Out of it, the finalizer's
 * reconciliation cancels the intent later.
 */
const CLOSING_CANCEL_BUDGET_MS = 3_000;

/** The provider's refusals of an amount as such (Stripe's codes). */
const AMOUNT_REFUSALS = new Set(['amount_too_small', 'amount_too_large']);

@Injectable()
export class PaymentsService {
  constructor(
    private readonly payments: PaymentRepository,
    private readonly orders: OrderRepository,
    private readonly products: ProductRepository,
    private readonly transitions: OrderTransitionsService,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly shop: ShopIdentity,
  ) {}

  /**
   * Creates (or returns) the order's payment intent with a deterministic idempotency key
   * (`order:<id>:payment-intent`), records it (unique per order), and moves the order to
   * PAYMENT_PENDING; its reservation keeps its deadline (API.md: released after the window).
   * The gateway call happens outside any transaction; every step is safe to repeat. An order
   * that expired while the intent was being made gets its intent cancelled and a 409.
   */
  async start(me: Principal, orderId: string): Promise<PaymentIntentView> {
    const order = await this.orders.findById(orderId);
    if (!order || order.userId !== me.userId)
      throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
    // past its deadline and not yet paying, the order is the expiry's (its job may not have run
    // yet): not revived — also on a retry after a first call whose move the deadline refused
    // on PostgreSQL's clock, as the expiry and the guarded move to PAYMENT_PENDING judge it
    const overdue = (await this.orders.reservationDueIn(orderId)) === 0;
    if (order.status === 'INVENTORY_RESERVED' && overdue) throw reservationExpired();
    // calling again returns the one intent (also once paid); a cancelled order is not payable
    const existing = await this.payments.findByOrder(orderId);
    // an intent recorded as cancelled is never handed out (the expiry cancelled it and its move
    // to CANCELLED is still owed — a worker that died between the two, say): nothing to pay with
    if (existing?.status === 'canceled') {
      throw overdue
        ? reservationExpired()
        : new DomainError('ORDER_NOT_PAYABLE', 'The payment was cancelled.');
    }
    if (
      existing &&
      order.status === 'PAYMENT_PENDING' &&
      overdue &&
      existing.status !== 'succeeded'
    ) {
      // started in time, not paid as far as we know, and the deadline has passed (its expiry may
      // be queued behind others). Our record may lag the provider (its event still on the way —
      // a bank debit recorded processing may have failed since, its intent payable again): the
      // provider says. Still waiting for the customer: its client secret is not handed out
      // again — a payment made after the window would revive the order (API.md: released after
      // the window) — and the intent is cancelled now, as the expiry will: the client holds the
      // secret from its first call, and paid with it after this 409 said it no longer could.
      // Submitted in time (processing) or made (succeeded, also just before the cancel): shown
      // as it is.
      const budget = this.providerBudget();
      let remote = await this.gateway.retrieveIntent(existing.intentId, budget);
      if (remote.status === 'requires_payment_method')
        remote = await this.gateway.cancelIntent(existing.intentId, budget);
      if (remote.status === 'requires_payment_method' || remote.status === 'canceled')
        throw reservationExpired();
      return view({ ...existing, status: remote.status });
    }
    if (existing && order.status !== 'CANCELLED') {
      if (order.status === 'INVENTORY_RESERVED') {
        // recorded from an event that overtook this call's first attempt (the finalizer adopted
        // the intent) while the order's step to PAYMENT_PENDING is still owed: taken now, so
        // the payment is followed as every pending one is (API.md: order → PAYMENT_PENDING)
        await this.transitions.markPaymentPending(orderId, `user:${me.userId}`);
        const moved = (await this.orders.findById(orderId))?.status;
        if (moved === 'INVENTORY_RESERVED') throw reservationExpired();
        if (moved === 'CANCELLED')
          throw new DomainError('ORDER_NOT_PAYABLE', 'The order was cancelled.');
      }
      return view(existing);
    }
    if (order.status !== 'INVENTORY_RESERVED' && order.status !== 'PAYMENT_PENDING') {
      throw new DomainError('ORDER_NOT_PAYABLE', `An order in ${order.status} cannot be paid.`);
    }
    if (overdue) throw reservationExpired();
    // a product taken off sale since the order was placed (a recall, a price mistake — the order
    // keeps the price it was placed at) is not sold by a payment begun after, even once it is
    // back on sale (its price mended). (A payment begun before goes on: its client holds the
    // secret, and the provider, not this route, takes the money.)
    const productIds = order.items.map((i) => i.productId);
    const offSale = await this.products.offSaleSince(productIds, order.placedEpoch ?? null);
    if (offSale.length > 0) {
      // never payable now: cancelled at once, its units back on sale — left to run out, it held
      // them for the rest of its window (the product mended and back on sale looked sold out),
      // and then counted against the customer as abandoned. The shop's doing, not the
      // customer's: its actor says so (the email tells the customer a product was withdrawn; the
      // purchase caps never count it). In a transaction of its own: it stands although this
      // request answers 409. A payment a concurrent start has recorded meanwhile is left to go
      // on (begun before, as above).
      const { changed } = await this.tx.runOwn(() =>
        this.transitions.cancel(orderId, 'PAYMENT_FAILED', PRODUCT_WITHDRAWN_ACTOR, {
          onlyIfNoOpenPayment: true,
        }),
      );
      throw new DomainError(
        'ORDER_NOT_PAYABLE',
        `A product of this order has been taken off sale: the order can no longer be paid${changed ? ', and is cancelled' : ''}.`,
      );
    }
    // a total of nothing (free products only) cannot be charged: a 409, not the provider's
    // refusal as a 502 on every retry
    if (order.totalAmount <= 0)
      throw new DomainError(
        'ORDER_NOT_PAYABLE',
        'The order totals nothing: there is nothing to charge.',
      );
    // (read before the budget starts: a wait for the database is not the provider's)
    const shop = await this.shop.id();
    const budget = this.providerBudget();
    const intent = await this.gateway
      .createIntent(
        {
          orderId,
          shop,
          amount: order.totalAmount,
          currency: order.currency,
          idempotencyKey: gatewayKeys.createIntent(orderId),
        },
        budget,
      )
      .catch(async (err: unknown) => {
        // below the provider's minimum charge (₹0.50, $0.50, HK$4…) or above its maximum: the
        // same answer every time for this order, so the order's problem, not the provider's.
        // Never payable: cancelled at once, its units back on sale — left to run out, it held them
        // for the rest of its window (a 409 on every try) and then counted against the customer
        // as abandoned. The shop's doing (its ORDER_MINIMUM_AMOUNT below the provider's minimum
        // for its currency, say): marked as a payment start failed on the shop's side, which the
        // purchase caps never count, and cancelled by the shop's actor. One transaction of its
        // own, standing although this request answers 409; the guarded cancel releases the stock
        // once, whatever concurrent starts and retries do.
        if (
          err instanceof GatewayError &&
          err.kind === 'rejected' &&
          AMOUNT_REFUSALS.has(err.code ?? '')
        ) {
          const { changed } = await this.tx.runOwn(async () => {
            await this.orders.notePaymentStartFailed(orderId, this.clock.now());
            return this.transitions.cancel(orderId, 'PAYMENT_FAILED', UNCHARGEABLE_TOTAL_ACTOR, {
              onlyIfNoOpenPayment: true,
            });
          });
          throw new DomainError(
            'ORDER_NOT_PAYABLE',
            `The payment provider cannot charge this total (${err.code}): the order can no longer be paid${changed ? ', and is cancelled' : ''}.`,
          );
        }
        // the shop's failure, not the customer's: an order that then expires unpaid is not held
        // against the customer as abandoned (purchase limits). A transaction of its own, best
        // effort (the database may be what failed).
        await this.tx
          .runOwn(() => this.orders.notePaymentStartFailed(orderId, this.clock.now()))
          .catch(() => undefined);
        throw err;
      });
    const { payment, status } = await this.tx.run(async () => {
      const now = this.clock.now();
      const payment = await this.payments.recordIntent(
        this.ids.uuid(),
        this.gateway.provider,
        intent,
        now,
      );
      await this.transitions.markPaymentPending(orderId, `user:${me.userId}`);
      return { payment, status: (await this.orders.findById(orderId))?.status };
    });
    if (status === 'CANCELLED' || status === 'INVENTORY_RESERVED') {
      // cancelled, or its deadline passed while the intent was being made (the guarded move
      // refused it): the intent must never be paid
      // (out of budget, the intent stays payable a while: the finalizer's reconciliation cancels
      // an intent of a cancelled order, and refunds one paid after it)
      // (a short budget of its own, CLOSING_CANCEL_BUDGET_MS: the transaction's wait above is
      // not the provider's, and the customer has waited for the intent already)
      await this.gateway.cancelIntent(
        payment.intentId,
        budgetOf(Math.min(CLOSING_CANCEL_BUDGET_MS, this.config.stripe.startBudgetMs)),
      );
      throw status === 'CANCELLED'
        ? new DomainError(
            'ORDER_NOT_PAYABLE',
            'The order was cancelled before its payment started.',
          )
        : reservationExpired();
    }
    return view(payment);
  }

  /**
   * The customer waits: the provider calls from here on answer within PAYMENT_START_BUDGET_MS, or
   * 503 (a retry with the same key meets what they did meanwhile). Begun at the first call, not
   * with the request: a wait for the database is not the provider's (it answered 503 "provider
   * unavailable" while Stripe was fine — diff review).
   */
  private providerBudget(): CallBudget {
    return budgetOf(this.config.stripe.startBudgetMs);
  }
}
