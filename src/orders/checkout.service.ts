import { policyHeaderItem, stateHeaderItem } from '../common/throttling/rate-limit.policies';
import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { render } from '../common/errors/problem-details.filter';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { RetryAfterRepair, TransactionHost } from '../database/transaction-host';
import { CartRepository } from '../cart/cart.repository';
import { ProductSnapshotRepository } from '../catalog/product-snapshot.repository';
import type { OpeningReadsOf } from '../database/opening-reads';
import { StockReservationService } from '../inventory/stock-reservation.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { MAX_ORDER_LINES } from '../common/order-lines';
import { CreateOrderDto } from './dto/create-order.dto';
import { OrderDto, mapOrder } from './dto/order.response';
import { fastPathLines } from './checkout-sold-out.guard';
import { Order, OrderLine } from './order.model';
import { OrderMetrics } from './order-metrics';
import { OrderRepository } from './order.repository';
import { priceLines } from './order-pricing';
import {
  PurchaseLimitBreach,
  PurchaseLimitRepository,
  limitRefusalOf,
} from './purchase-limit.repository';
import { ReservationExpiryService } from './reservation-expiry.service';

/** The rate limit on abandoned checkouts, as its 429 names it (RateLimit-Policy). */
const ABANDONED_POLICY = 'abandoned-orders';

/**
 * 409 PURCHASE_LIMIT_EXCEEDED, its detail naming each cap on what the customer holds that the
 * order would pass (API.md: units per product, open unpaid orders). Past none of those but the
 * day's allowance of abandoned unpaid orders: a rate limit on placing orders — 429 RATE_LIMITED
 * with Retry-After (until enough of them are a day old to leave room for one more) and the
 * RateLimit headers.
 */
function purchaseLimitExceeded(breaches: PurchaseLimitBreach[]): DomainError {
  const held = breaches.filter((b) => b.cap !== 'abandonedPerDay');
  const abandoned = breaches.find((b) => b.cap === 'abandonedPerDay');
  if (held.length === 0 && abandoned) {
    const wait = Math.max(1, abandoned.retryAfter);
    return new DomainError(
      'RATE_LIMITED',
      `A customer may leave at most ${abandoned.limit} orders unpaid (cancelled, expired or declined) in 24 hours (${abandoned.held} so far); new orders wait until enough of them are a day old.`,
      {
        headers: {
          'Retry-After': String(wait),
          'RateLimit-Policy': policyHeaderItem(ABANDONED_POLICY, abandoned.limit, 86_400),
          RateLimit: stateHeaderItem(ABANDONED_POLICY, 0, wait),
        },
      },
    );
  }
  const sentences = held.map((b) =>
    b.cap === 'openOrders'
      ? `A customer may have at most ${b.limit} unpaid orders open at a time (this order would make ${b.held}); pay for or cancel one first.`
      : `A customer may hold at most ${b.limit} units of a product in unpaid orders (product ${b.productId}: this order would make ${b.held}).`,
  );
  return new DomainError('PURCHASE_LIMIT_EXCEEDED', sentences.join(' '), {
    extensions: { limits: held },
  });
}

/**
 * The checkout's price snapshot as its transaction's opening read (OpeningReads: sent with
 * BEGIN and the idempotency claim, one round trip less), for a plain body (fastPathLines:
 * lower-case UUIDs that the pipe's @IsUUID() takes, so the read cannot fail); none for a cart
 * checkout or any other body — the snapshot is then read after validation, as usual.
 */
export const checkoutOpeningReads: OpeningReadsOf = (body) => {
  const lines = fastPathLines(body);
  return lines ? [ProductSnapshotRepository.openingRead(lines.map((l) => l.productId))] : [];
};

/** Checkout: turning a customer's lines (or cart) into a priced order holding its stock. */
@Injectable()
export class CheckoutService {
  constructor(
    private readonly orders: OrderRepository,
    private readonly products: ProductSnapshotRepository,
    private readonly carts: CartRepository,
    private readonly stock: StockReservationService,
    private readonly outbox: OutboxRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: OrderMetrics,
    private readonly limits: PurchaseLimitRepository,
    private readonly expiry: ReservationExpiryService,
  ) {}

  /**
   * Creates an order from the given lines (or the lines the cart shows — products on sale —
   * taken out of it in the same transaction). After the price snapshot read, everything is written in the message that
   * carries the COMMIT: the order with its lines, history and outbox event, the per-customer
   * purchase-limit check, the idempotency record (added by the interceptor), and last — to hold
   * the hot inventory row locks for the reservation and the commit only — the stock reservation.
   */
  async create(me: Principal, dto: CreateOrderDto): Promise<OrderDto> {
    const order = await this.tx.run(async (): Promise<Order> => {
      const requested = dto.items ?? (await this.carts.takeShown(me.userId, this.config.currency));
      if (requested.length === 0) {
        throw new DomainError('ORDER_EMPTY', 'The order has no items and the cart is empty.');
      }
      if (requested.length > MAX_ORDER_LINES) {
        // a cart filled past the cap (PUT refuses it; rows written otherwise): not one order
        throw new DomainError(
          'VALIDATION_FAILED',
          `An order holds at most ${MAX_ORDER_LINES} products.`,
          {
            errors: [
              { field: 'items', message: `the cart holds more than ${MAX_ORDER_LINES} products` },
            ],
          },
        );
      }
      const snapshots = await this.products.findByIds(requested.map((l) => l.productId));
      const lines: OrderLine[] = priceLines(requested, snapshots, this.config.currency);
      const totalAmount = lines.reduce((sum, l) => sum + l.lineTotalAmount, 0);
      if (totalAmount < this.config.orderMinimumAmount) {
        // (free products alone, or a total under the provider's smallest charge): it could never
        // be paid — its stock held until it expired, and each such order counted as abandoned
        throw new DomainError(
          'ORDER_NOT_PAYABLE',
          `An order must total at least ${this.config.orderMinimumAmount} minor units of ${this.config.currency}: the payment provider charges nothing smaller.`,
        );
      }
      if (totalAmount % this.config.amountStep !== 0) {
        // a price set before the rule (catalog writes refuse such prices): it could never be paid
        throw new DomainError(
          'ORDER_NOT_PAYABLE',
          `An order's total in ${this.config.currency} must be a multiple of ${this.config.amountStep} minor units (this one: ${totalAmount}): the payment provider charges no other amount.`,
        );
      }
      if (totalAmount > this.config.orderMaximumAmount) {
        // more than the provider charges at once: the payment would be refused on every try,
        // the stock held until the order expired
        throw new DomainError(
          'ORDER_NOT_PAYABLE',
          `An order may total at most ${this.config.orderMaximumAmount} minor units of ${this.config.currency} (this one: ${totalAmount}): the payment provider charges nothing larger; split it into smaller orders.`,
        );
      }
      const now = this.clock.now();
      const reservationExpiresAt = new Date(
        now.getTime() + this.config.reservationTtlSeconds * 1000,
      );
      const created: Order = {
        id: this.ids.uuid(),
        userId: me.userId,
        status: 'INVENTORY_RESERVED',
        cancellationReason: null,
        currency: this.config.currency,
        totalAmount,
        refundedAmount: 0,
        reservationExpiresAt,
        createdAt: now,
        updatedAt: now,
        items: lines,
      };
      const event = this.outbox.statement('order.created', created.id, {
        orderId: created.id,
        reservationExpiresAt: reservationExpiresAt.toISOString(),
      });
      this.orders.insertOnCommit(
        {
          ...created,
          reservationExpiresAt,
          history: [
            { from: null, to: 'CREATED', reason: null },
            { from: 'CREATED', to: 'INVENTORY_RESERVED', reason: null },
          ],
          actor: `user:${me.userId}`,
        },
        event,
      );
      // Per-customer caps (OWASP API6): checked in the same message, after the insert (the new
      // order counts) and before the inventory row locks, under a lock on the customer.
      const caps = this.config.purchaseLimits;
      if (caps.unitsPerProduct > 0 || caps.openOrders > 0 || caps.abandonedPerDay > 0) {
        this.limits.checkOnCommit(
          me.userId,
          lines.map((l) => l.productId),
          caps,
          (err) => {
            const refusal = limitRefusalOf(err);
            if (!refusal) return err;
            const refused = purchaseLimitExceeded(refusal.breaches);
            // a cap on what the customer holds passed with reservations past their deadline among
            // it (the expiry late, or away): expire those, then count again — once
            const holds = refusal.breaches.some((b) => b.cap !== 'abandonedPerDay');
            return holds && refusal.overdueOrders.length > 0
              ? new RetryAfterRepair(refused, () => this.expireOverdue(refusal.overdueOrders))
              : refused;
          },
        );
      }
      // The hot inventory row locks are taken last of all: in the message that carries the
      // COMMIT, after the idempotency record the request writes — held for the reservation's
      // statements and the commit, with no round trip in between.
      this.stock.reserveOnCommit(created.id, lines);
      this.metrics.orderCreated();
      return created;
    });
    // Answer from what was written: no re-read while the reservation's row locks are held.
    return mapOrder(order);
  }

  /**
   * Expires these orders of the customer's that are past their reservation, as the expiry job
   * would (guarded: still reserved, due, no payment open). The checkout counts again whatever
   * became of them: a concurrent checkout of the customer's may have expired them first, and
   * then failed (sold out) without taking the room. Throws the database's 503 when it could not
   * be asked.
   */
  private async expireOverdue(orderIds: string[]): Promise<boolean> {
    for (const id of orderIds)
      await this.expiry.expire(id, { unlessPaymentOpen: true }).catch((err: unknown) => {
        // the database could not do it (unreachable, busy: a 503): that is the answer — one the
        // client retries — not the cap's 409, which the customer no longer deserves and which a
        // client takes as final
        if (render(err)?.status === 503) throw err;
        return false;
      });
    return true;
  }
}
