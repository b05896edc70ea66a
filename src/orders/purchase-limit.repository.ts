import { Injectable } from '@nestjs/common';
import { TransactionHost, pgErrorCode } from '../database/transaction-host';
import { HOLDS_RESERVATION, PRODUCT_WITHDRAWN_ACTOR } from './order-state-machine';

/** Per-customer caps on open unpaid orders, and on unpaid orders abandoned in a day (0 = cap off). */
export interface PurchaseCaps {
  unitsPerProduct: number;
  openOrders: number;
  abandonedPerDay: number;
}

/**
 * A cap the new order would pass: what the customer would then hold against the limit (for
 * `abandonedPerDay`, the unpaid orders already abandoned among those placed in the last 24 h,
 * and the seconds until enough of them are a day old to leave room for one more).
 */
export type PurchaseLimitBreach =
  | { cap: 'openOrders'; limit: number; held: number }
  | { cap: 'abandonedPerDay'; limit: number; held: number; retryAfter: number }
  | { cap: 'unitsPerProduct'; limit: number; held: number; productId: string };

/**
 * Cancellations that mean "held stock, never paid": cancelled, expired — and declined, which the
 * customer can cause at will (a 3-D Secure challenge failed on purpose, a wrong CVC) and which
 * releases the stock at once for the next order: uncounted, one account re-ordered ~1,000 times
 * a day, each a PaymentIntent at Stripe. Counting declines is also the usual guard against card
 * testing. A late success refunded is excluded below (the customer did pay).
 */
const ABANDONED_REASONS = ['CUSTOMER_REQUESTED', 'RESERVATION_EXPIRED', 'PAYMENT_FAILED'];

/**
 * A refusal by the limit check: the caps the order would pass, and the customer's reserved
 * orders past their reservation among what was counted (held stock the expiry has not released
 * yet: counted, as they hold it; expiring them may leave room).
 */
export interface PurchaseLimitRefusal {
  breaches: PurchaseLimitBreach[];
  overdueOrders: string[];
}

/** At most this many overdue orders are named in a refusal (expired before the check runs again). */
const OVERDUE_NAMED = 20;

/** What the limit check's `purchase_limit_exceeded` error carries; null for any other error. */
export function limitRefusalOf(err: unknown): PurchaseLimitRefusal | null {
  const driverError = (err as { driverError?: { message?: string; detail?: string } }).driverError;
  if (pgErrorCode(err) !== 'P0001' || driverError?.message !== 'purchase_limit_exceeded')
    return null;
  const entries = JSON.parse(driverError.detail ?? '[]') as (
    PurchaseLimitBreach | { cap: 'overdue'; orderId: string }
  )[];
  const refusal: PurchaseLimitRefusal = { breaches: [], overdueOrders: [] };
  for (const entry of entries) {
    if (entry.cap === 'overdue') refusal.overdueOrders.push(entry.orderId);
    else refusal.breaches.push(entry);
  }
  return refusal;
}

/**
 * Advisory-lock class of a customer's checkouts (two-int4 key space, separate from the bigint keys
 * of idempotency claims). Any number, the same everywhere; "PL" in ASCII.
 */
const CHECKOUT_LOCK_CLASS = 0x504c;

/**
 * What a customer holds in open unpaid orders (the statuses that hold a reservation — a reserved
 * order past its reservation too, until the expiry releases its stock), checked
 * against the purchase caps atomically: one customer's checkouts are serialised by a transaction-scoped
 * advisory lock on the customer, and the count runs after it in a statement of its own, so its
 * snapshot sees every order a previous checkout of the same customer committed.
 */
@Injectable()
export class PurchaseLimitRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Queues the check in the message that carries the transaction's COMMIT, after the new order's
   * insert (so the order is counted) and before the stock reservation (`last`): no round trip of
   * its own. Lock order: this customer lock, then the inventory row locks — nothing takes them the
   * other way round (stock releases and sales never take the customer lock), so no deadlock. Two
   * statements: the lock (it may wait for the customer's other checkout to commit), then the count
   * with a fresh snapshot, raising `purchase_limit_exceeded` with the breaches as JSON in the detail
   * (`limitRefusalOf`), which aborts the transaction. A reserved order past its reservation (no
   * longer payable; the expiry has not reached it: late, or the workers or Redis are away) still
   * holds its stock, so it counts — uncounted, a customer re-ordered up to the caps again every
   * reservation window while the expiry was away — and the refusal names it, so the caller can
   * expire it and count again (CheckoutService).
   */
  checkOnCommit(
    userId: string,
    productIds: string[],
    caps: PurchaseCaps,
    mapError: (err: unknown) => unknown,
  ): void {
    // raw SQL: hot path of bench:flash-sale (the purchase-limit check, sent in COMMIT's message
    // under a customer advisory lock, see docs/BENCHMARKS.md)
    this.tx.sendWithCommit(
      `SELECT pg_advisory_xact_lock(${CHECKOUT_LOCK_CLASS}, hashtext($1::text));
       WITH unpaid AS (
         SELECT id, status = 'INVENTORY_RESERVED' AND reservation_expires_at <= now() AS overdue
           FROM orders
          WHERE user_id = $1::uuid AND status = ANY($5::text[])
       ), breaches AS (
         SELECT NULL::uuid AS product_id,
                jsonb_build_object('cap', 'openOrders', 'limit', $3::int, 'held', count(*)) AS breach
           FROM unpaid
          WHERE $3::int > 0
         HAVING count(*) > $3::int
         UNION ALL
         -- orders placed in the last 24 h and abandoned unpaid (the customer's recent orders:
         -- orders_user_recent_idx); at the cap, no new one until enough of them are a day old
         SELECT NULL::uuid AS product_id,
                jsonb_build_object('cap', 'abandonedPerDay', 'limit', $6::int, 'held', count(*),
                                   -- until enough of them are a day old to leave room for one more
                                   'retryAfter', ceil(extract(epoch FROM
                                     (array_agg(created_at ORDER BY created_at))[(count(*) - $6::int + 1)::int]
                                     + interval '24 hours' - now()))::int) AS breach
           FROM orders o
          WHERE $6::int > 0 AND o.user_id = $1::uuid AND o.created_at > now() - interval '24 hours'
            AND o.status = 'CANCELLED' AND o.cancellation_reason = ANY($7::text[])
            -- paid after all (late, then refunded): the customer did not walk away from it — unless
            -- the customer cancelled it (paying into one's own cancel escaped the count for good)
            AND (o.cancellation_reason = 'CUSTOMER_REQUESTED'
                 OR NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'succeeded'))
            -- its payment could not be started for the shop's failure (the provider unreachable),
            -- and it never had one: the customer tried to pay, the shop could not take it
            AND NOT (o.payment_start_failed_at IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id))
            -- cancelled because a product of it was taken off sale before its payment began: the
            -- shop's doing (also when a payment start racing it had made an intent, never handed out)
            AND NOT EXISTS (SELECT 1 FROM order_status_history h
                             WHERE h.order_id = o.id AND h.to_status = 'CANCELLED'
                               AND h.actor = '${PRODUCT_WITHDRAWN_ACTOR}')
         HAVING $6::int > 0 AND count(*) >= $6::int
         UNION ALL
         SELECT i.product_id,
                jsonb_build_object('cap', 'unitsPerProduct', 'limit', $4::int, 'held', sum(i.quantity),
                                   'productId', i.product_id)
           FROM order_items i JOIN unpaid u ON u.id = i.order_id
          WHERE $4::int > 0 AND i.product_id = ANY($2::uuid[])
          GROUP BY i.product_id
         HAVING sum(i.quantity) > $4::int
       )
       SELECT raise_purchase_limit_exceeded(
                jsonb_agg(breach ORDER BY product_id NULLS FIRST)
                -- the reserved orders past their reservation counted here (the expiry's, not yet released)
                || coalesce((SELECT jsonb_agg(jsonb_build_object('cap', 'overdue', 'orderId', o.id))
                               FROM (SELECT id FROM unpaid WHERE overdue LIMIT $8::int) o), '[]'::jsonb))
         FROM breaches HAVING count(*) > 0`,
      [
        userId,
        productIds,
        caps.openOrders,
        caps.unitsPerProduct,
        HOLDS_RESERVATION,
        caps.abandonedPerDay,
        ABANDONED_REASONS,
        OVERDUE_NAMED,
      ],
      { mapError },
    );
  }
}
