import { Injectable } from '@nestjs/common';
import { EntityManager, In, Raw, SelectQueryBuilder } from 'typeorm';
import { SqlFragment, sql } from '../database/sql-fragment';
import { DISPUTE_RELEASED_SQL } from '../payments/entities/payment-dispute.entity';
import { TransactionHost } from '../database/transaction-host';
import { OrderItemEntity } from './entities/order-item.entity';
import { OrderStatusHistoryEntity } from './entities/order-status-history.entity';
import { OrderEntity } from './entities/order.entity';
import {
  CancellationReason,
  HOLDS_RESERVATION,
  OrderStatus,
  PAID_STATUSES,
  requiresReason,
  sourcesOf,
} from './order-state-machine';
import { Order, OrderLine, OrderWithHistory, StatusChange } from './order.model';

export interface NewOrder {
  id: string;
  userId: string;
  status: OrderStatus;
  currency: string;
  totalAmount: number;
  reservationExpiresAt: Date;
  createdAt: Date;
  items: OrderLine[];
  history: { from: OrderStatus | null; to: OrderStatus; reason: string | null }[];
  actor: string;
}

export interface Transition {
  to: OrderStatus;
  /** Recorded in the history; also the order's cancellation reason when `to` requires one. */
  reason?: CancellationReason | null;
  actor: string;
  at: Date;
  /**
   * Extra guard, e.g. only expire when the deadline has really passed — on PostgreSQL's clock, the
   * one every process judges a deadline on (the API's and the workers' may disagree).
   */
  reservationDue?: boolean;
  /** Extra guard, the other way: only while the deadline has not passed (start a payment). */
  reservationLive?: boolean;
  /** Extra guard: only if no payment of the order is open at the gateway (the expiry's). */
  noOpenPayment?: boolean;
  /**
   * Extra guard: only if the refunds of the order still pending — ours, and those made at the
   * provider as of its last sync (payments.provider_refunds_pending) — would not return its whole
   * total (fulfilment's: a full refund still settling would leave the goods shipped and the money
   * returned; a partial one — a goodwill credit — does not hold the shipment, and the order
   * moves on to PARTIALLY_REFUNDED from FULFILLED when it settles). The order's payment row is
   * locked first (FOR SHARE; payment before order, the order every path takes), so a refund being
   * reserved — under that row's lock — is either seen or comes after.
   */
  noRefundPending?: boolean;
  /**
   * Extra guard: only if no dispute of the order's payment is open or lost (payment_disputes,
   * written by payments/ under the payment row's lock): the customer's bank has taken the money
   * back, or may. Won, an inquiry closed, or one prevented (DISPUTE_RELEASED_SQL) no longer holds it.
   */
  noDispute?: boolean;
}

const toLine = (i: OrderItemEntity): OrderLine => ({
  productId: i.productId,
  sku: i.sku,
  name: i.name,
  quantity: i.quantity,
  unitPriceAmount: i.unitPriceAmount,
  lineTotalAmount: i.lineTotalAmount,
});

const toOrder = (o: OrderEntity, items: OrderItemEntity[]): Order => ({
  id: o.id,
  userId: o.userId,
  status: o.status,
  cancellationReason: o.cancellationReason,
  currency: o.currency,
  totalAmount: o.totalAmount,
  refundedAmount: o.refundedAmount,
  reservationExpiresAt: o.reservationExpiresAt,
  createdAt: o.createdAt,
  updatedAt: o.updatedAt,
  placedEpoch: o.placedEpoch,
  items: items.map(toLine),
});

const toStatusChange = (h: OrderStatusHistoryEntity): StatusChange => ({
  from: h.fromStatus,
  to: h.toStatus,
  reason: h.reason,
  actor: h.actor,
  at: h.createdAt,
});

/**
 * Orders, their lines and their status history (OrderEntity, OrderItemEntity,
 * OrderStatusHistoryEntity): the only code that writes these tables. Other modules read orders
 * through the methods at the end of the class.
 */
/** The most order lines one page of an order list carries (see OrderRepository.page). */
export const ORDER_PAGE_LINE_BUDGET = 1000;

@Injectable()
export class OrderRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * The order, its lines, its first history rows — and `alongside` (e.g. the outbox event, a
   * fragment with placeholders of its own, as a data-modifying CTE) — in one statement, sent in
   * the COMMIT's message (TransactionHost.sendWithCommit): nothing reads the new order back inside
   * its transaction, so it costs no round trip of its own. The three inserts are `place_order`
   * (migrations/1763800011000-CheckoutFunctions.ts: PL/pgSQL, its plans kept for the session).
   * Every placeholder is cast, as the values are inlined.
   */
  insertOnCommit(order: NewOrder, alongside?: SqlFragment): void {
    // raw SQL: hot path of bench:flash-sale (the checkout's order statement, sent in COMMIT's
    // message: orders + order_items + order_status_history (place_order) + outbox in one
    // statement, see docs/BENCHMARKS.md)
    const statement = sql`${alongside ? sql`WITH extra AS (${alongside}) ` : sql``}SELECT place_order(
         ${order.id}::uuid, ${order.userId}::uuid, ${order.status}::text, ${order.currency}::text,
         ${order.totalAmount}::bigint, ${order.reservationExpiresAt}::timestamptz, ${order.createdAt}::timestamptz,
         ${order.items.map((i) => i.productId)}::uuid[], ${order.items.map((i) => i.sku)}::text[],
         ${order.items.map((i) => i.name)}::text[], ${order.items.map((i) => i.quantity)}::int[],
         ${order.items.map((i) => i.unitPriceAmount)}::bigint[], ${order.items.map((i) => i.lineTotalAmount)}::bigint[],
         ${order.actor}::text, ${order.history.map((h) => h.from)}::text[], ${order.history.map((h) => h.to)}::text[],
         ${order.history.map((h) => h.reason)}::text[])`;
    this.tx.sendWithCommit(statement.text, [...statement.params]);
  }

  /**
   * Moves the order to `to` only if its current status is one the transition table allows
   * (`UPDATE … WHERE status IN (:from)`, from `sourcesOf(to)`), and records the change. The order's
   * row is locked first, so the status read is the one the guard sees. Returns the previous
   * status, or null when the guard did not match (someone else already moved it, or it may not
   * move). Inside a transaction only.
   */
  async transition(orderId: string, t: Transition): Promise<OrderStatus | null> {
    return this.tx.withManager(async (m) => {
      if (t.noRefundPending || t.noDispute) {
        // a read lock of the payments table's row (written by payments/)
        await m.query(`SELECT 1 FROM payments WHERE order_id = $1 FOR SHARE`, [orderId]);
      }
      const previous = await this.lockStatus(m, orderId);
      if (!previous) return null;
      const update = m
        .createQueryBuilder()
        .update(OrderEntity)
        .set({
          status: t.to,
          updatedAt: t.at,
          ...(requiresReason(t.to) ? { cancellationReason: t.reason ?? null } : {}),
        })
        .where('id = :orderId', { orderId })
        .andWhere('status IN (:...from)', { from: sourcesOf(t.to) });
      if (t.reservationDue) update.andWhere('reservation_expires_at <= statement_timestamp()');
      if (t.reservationLive) update.andWhere('reservation_expires_at > statement_timestamp()');
      if (t.noOpenPayment) {
        // a read of the payments table (written by payments/): an open intent may still be paid
        update.andWhere(
          `NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = :orderId AND p.status NOT IN ('succeeded', 'canceled'))`,
        );
      }
      if (t.noRefundPending) {
        // a read of the refunds table (written by payments/), after the locks: a new snapshot
        update.andWhere(
          `refunded_amount + (SELECT coalesce(sum(r.amount), 0) FROM refunds r
                               WHERE r.order_id = :orderId AND r.status = 'pending')
                           + (SELECT coalesce(sum(p.provider_refunds_pending), 0) FROM payments p
                               WHERE p.order_id = :orderId) < total_amount`,
        );
      }
      if (t.noDispute) {
        // a read of the disputes table (written by payments/), after the locks: a new snapshot
        update.andWhere(
          `NOT EXISTS (SELECT 1 FROM payment_disputes d JOIN payments p ON p.id = d.payment_id
                        WHERE p.order_id = :orderId AND d.status NOT IN ${DISPUTE_RELEASED_SQL})`,
        );
      }
      if (!(await update.execute()).affected) return null;
      await this.recordChange(m, orderId, {
        from: previous,
        to: t.to,
        reason: t.reason ?? null,
        actor: t.actor,
        at: t.at,
      });
      return previous;
    });
  }

  /**
   * Adds a refund to the order, guarded in one statement: only from a status the table lets reach
   * PARTIALLY_REFUNDED (after PAID), and never beyond the total (the CHECK constraint backs this
   * too). The status becomes REFUNDED when the whole total is refunded, else PARTIALLY_REFUNDED;
   * a REFUNDED order whose refund the provider reversed (withdrawRefund) takes a new one and stays
   * REFUNDED (no transition leaves it). Returns null when the guard refused. Inside a transaction only.
   */
  async applyRefund(
    orderId: string,
    amount: number,
    actor: string,
    at: Date,
  ): Promise<{ previous: OrderStatus; status: OrderStatus } | null> {
    const full: OrderStatus = 'REFUNDED';
    const partial: OrderStatus = 'PARTIALLY_REFUNDED';
    return this.tx.withManager(async (m) => {
      const previous = await this.lockStatus(m, orderId);
      if (!previous) return null;
      const result = await m
        .createQueryBuilder()
        .update(OrderEntity)
        .set({
          refundedAmount: () => 'refunded_amount + CAST(:amount AS bigint)',
          status: () =>
            'CASE WHEN status = :full OR refunded_amount + CAST(:amount AS bigint) = total_amount THEN :full ELSE :partial END',
          updatedAt: at,
        })
        .where('id = :orderId')
        .andWhere('status IN (:...from)')
        .andWhere('CAST(:amount AS bigint) > 0')
        .andWhere('refunded_amount + CAST(:amount AS bigint) <= total_amount')
        .setParameters({ orderId, amount, full, partial, from: [...sourcesOf(partial), full] })
        .returning(['status'])
        .execute();
      const row = (result.raw as { status: OrderStatus }[])[0];
      if (!row) return null;
      await this.recordChange(m, orderId, {
        from: previous,
        to: row.status,
        reason: `refund ${amount}`,
        actor,
        at,
      });
      return { previous, status: row.status };
    });
  }

  /**
   * Takes a refund the provider reversed off the order's refunded amount; the status stays (a
   * history row says what happened). Null unless the order is REFUNDED / PARTIALLY_REFUNDED with
   * at least that much refunded (a cancelled order's refunds are never added to it). Inside a
   * transaction only.
   */
  async withdrawRefund(
    orderId: string,
    amount: number,
    actor: string,
    at: Date,
  ): Promise<OrderStatus | null> {
    return this.tx.withManager(async (m) => {
      const result = await m
        .createQueryBuilder()
        .update(OrderEntity)
        .set({ refundedAmount: () => 'refunded_amount - CAST(:amount AS bigint)', updatedAt: at })
        .where('id = :orderId')
        .andWhere('status IN (:...refunded)')
        .andWhere('CAST(:amount AS bigint) BETWEEN 1 AND refunded_amount')
        .setParameters({ orderId, amount, refunded: ['REFUNDED', 'PARTIALLY_REFUNDED'] })
        .returning(['status'])
        .execute();
      const row = (result.raw as { status: OrderStatus }[])[0];
      if (!row) return null;
      await this.recordChange(m, orderId, {
        from: row.status,
        to: row.status,
        reason: `refund ${amount} reversed`,
        actor,
        at,
      });
      return row.status;
    });
  }

  /**
   * Up to `limit` orders holding a reservation no payment has begun for (INVENTORY_RESERVED) with
   * a line of the product, in id order after `after` (the last of the previous batch).
   */
  async reservedWithProduct(
    productId: string,
    after: string | null,
    limit: number,
  ): Promise<string[]> {
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(OrderEntity)
        .createQueryBuilder('o')
        .select('o.id', 'id')
        .where(`o.status = 'INVENTORY_RESERVED'`)
        .andWhere(
          'EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.product_id = :productId)',
          { productId },
        )
        .andWhere(after === null ? 'TRUE' : 'o.id > :after', { after })
        .orderBy('o.id')
        .limit(limit)
        .getRawMany<{ id: string }>(),
    );
    return rows.map((r) => r.id);
  }

  /** The order with its lines (by product id) and its status history (oldest first). */
  async findById(id: string): Promise<OrderWithHistory | null> {
    const order = await this.tx.withManager((m) =>
      m
        .getRepository(OrderEntity)
        .createQueryBuilder('o')
        .leftJoinAndSelect('o.items', 'i')
        .leftJoinAndSelect('o.history', 'h')
        .where('o.id = :id', { id })
        .orderBy('i.productId')
        .addOrderBy('h.id')
        .getOne(),
    );
    if (!order) return null;
    return {
      ...toOrder(order, order.items ?? []),
      history: (order.history ?? []).map(toStatusChange),
    };
  }

  /**
   * Newest first, keyset-paginated on (created_at, id) — the `orders_*recent_idx` indexes; optional
   * owner and status filters. `after` is the last order of the previous page. Up to `limit`
   * orders, and no more lines in all than ORDER_PAGE_LINE_BUDGET (but always one order): 100
   * orders of 100 lines would be 10,000 lines (~2.5 MB) per request, read, built and sent at the
   * per-IP rate; a page cut short by lines says `more`, and the cursor goes on from its last order.
   */
  async page(
    filter: { userId?: string; status?: OrderStatus },
    limit: number,
    after: { createdAt: Date; id: string } | null,
  ): Promise<{ orders: Order[]; more: boolean }> {
    return this.tx.withManager(async (m) => {
      const query = m
        .getRepository(OrderEntity)
        .createQueryBuilder('o')
        .orderBy('o.createdAt', 'DESC')
        .addOrderBy('o.id', 'DESC')
        .limit(limit + 1);
      if (filter.userId) query.andWhere('o.userId = :userId', { userId: filter.userId });
      if (filter.status) query.andWhere('o.status = :status', { status: filter.status });
      if (after) {
        query.andWhere('(o.createdAt, o.id) < (:afterCreatedAt, CAST(:afterId AS uuid))', {
          afterCreatedAt: after.createdAt,
          afterId: after.id,
        });
      }
      const found = await query.getMany();
      if (found.length === 0) return { orders: [], more: false };
      // the lines each order has (the primary key's index), then only as many orders as fit
      const counted = await m
        .getRepository(OrderItemEntity)
        .createQueryBuilder('i')
        .select('i.order_id', 'orderId')
        .addSelect('count(*)::int', 'lines')
        .where('i.order_id IN (:...ids)', { ids: found.slice(0, limit).map((o) => o.id) })
        .groupBy('i.order_id')
        .getRawMany<{ orderId: string; lines: number }>();
      const linesOf = new Map(counted.map((c) => [c.orderId, c.lines]));
      const orders: OrderEntity[] = [];
      let lines = 0;
      for (const order of found.slice(0, limit)) {
        const n = linesOf.get(order.id) ?? 0;
        if (orders.length > 0 && lines + n > ORDER_PAGE_LINE_BUDGET) break;
        orders.push(order);
        lines += n;
      }
      // read as plain rows, not hydrated as entities (10,000 of them cost a request ~150 ms of
      // this process's CPU)
      const items = await m
        .getRepository(OrderItemEntity)
        .createQueryBuilder('i')
        .select('i.order_id', 'orderId')
        .addSelect('i.product_id', 'productId')
        .addSelect('i.sku', 'sku')
        .addSelect('i.name', 'name')
        .addSelect('i.quantity', 'quantity')
        .addSelect('i.unit_price_amount::float8', 'unitPriceAmount')
        .addSelect('i.line_total_amount::float8', 'lineTotalAmount')
        .where('i.order_id IN (:...ids)', { ids: orders.map((o) => o.id) })
        .orderBy('i.order_id')
        .addOrderBy('i.product_id')
        .getRawMany<OrderItemEntity>();
      const byOrder = new Map<string, OrderItemEntity[]>();
      for (const item of items) {
        const lines = byOrder.get(item.orderId);
        if (lines) lines.push(item);
        else byOrder.set(item.orderId, [item]);
      }
      return {
        orders: orders.map((o) => toOrder(o, byOrder.get(o.id) ?? [])),
        more: found.length > orders.length,
      };
    });
  }

  /**
   * Orders still holding their reservation whose window has passed (for the sweeper), oldest
   * first, except `excluding` (those the sweeper has looked at and left, e.g. a debit in flight).
   * `payment` (a read of the payments table, written by payments/), as OverdueOrders.settle judges
   * one: `none-open`, only those with no payment but a cancelled one — the orders the database
   * alone settles (the sweep's first pass, which read and left every paying order each minute,
   * each one more in `excluding`: a gateway outage during a sale left thousands); `to-ask`, only
   * those whose open payment the gateway is asked about — not a debit in flight (`processing`),
   * which its event settles, and which stays so for days.
   */
  async findOverdueReservations(
    limit: number,
    excluding: string[] = [],
    opts: { payment?: 'none-open' | 'to-ask' } = {},
  ): Promise<string[]> {
    const idConditions = (id: string) =>
      [
        // one array parameter: a long sweep's list could pass the 65,535 bind parameters a
        // statement may have (refused as a protocol violation, counted as the database down)
        excluding.length ? `${id} <> ALL(CAST(:excluding AS uuid[]))` : null,
        opts.payment === 'none-open'
          ? `NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = ${id} AND p.status <> 'canceled')`
          : null,
        opts.payment === 'to-ask'
          ? `EXISTS (SELECT 1 FROM payments p WHERE p.order_id = ${id} AND p.status NOT IN ('canceled', 'processing'))`
          : null,
      ]
        .filter((c) => c !== null)
        .join(' AND ');
    const due = await this.tx.withManager((m) =>
      m.getRepository(OrderEntity).find({
        select: { id: true },
        where: {
          status: In(HOLDS_RESERVATION),
          reservationExpiresAt: Raw((deadline) => `${deadline} <= statement_timestamp()`),
          ...(excluding.length || opts.payment ? { id: Raw(idConditions, { excluding }) } : {}),
        },
        order: { reservationExpiresAt: 'ASC' },
        take: limit,
      }),
    );
    return due.map((o) => o.id);
  }

  /**
   * Records that starting the order's payment failed on the shop's side (first time only): the
   * purchase limits do not count it as abandoned when it ends without a payment.
   */
  async notePaymentStartFailed(id: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(OrderEntity)
        .set({ paymentStartFailedAt: () => 'COALESCE(payment_start_failed_at, :at)' })
        .setParameters({ at })
        .where('id = :id', { id })
        .execute(),
    );
  }

  /**
   * How long until the reservation of an order that still holds one is due, in milliseconds on
   * PostgreSQL's clock (0 once due); null when it holds none. The expiry decides on this, never on
   * its own clock, and an expiry job that ran early learns when to look again.
   */
  async reservationDueIn(id: string): Promise<number | null> {
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(OrderEntity)
        .createQueryBuilder('o')
        .select(
          `GREATEST(0, ceil(extract(epoch FROM o.reservation_expires_at - statement_timestamp()) * 1000))::float8`,
          'dueInMs',
        )
        .where('o.id = :id', { id })
        .andWhere('o.status IN (:...holding)', { holding: HOLDS_RESERVATION })
        .andWhere('o.reservation_expires_at IS NOT NULL')
        .getRawMany<{ dueInMs: number }>(),
    );
    return rows[0] ? Number(rows[0].dueInMs) : null;
  }

  /** The order's status, its row locked until the transaction ends (the guarded updates' read). */
  private async lockStatus(m: EntityManager, orderId: string): Promise<OrderStatus | null> {
    const order = await m.getRepository(OrderEntity).findOne({
      select: { id: true, status: true },
      where: { id: orderId },
      lock: { mode: 'pessimistic_write' },
    });
    return order?.status ?? null;
  }

  private async recordChange(
    m: EntityManager,
    orderId: string,
    change: { from: OrderStatus; to: OrderStatus; reason: string | null; actor: string; at: Date },
  ): Promise<void> {
    await m.getRepository(OrderStatusHistoryEntity).insert({
      orderId,
      fromStatus: change.from,
      toStatus: change.to,
      reason: change.reason,
      actor: change.actor,
      createdAt: change.at,
    });
  }

  // ---- Reads for other modules: they ask here instead of reading the orders tables themselves.

  /** The order's status, null for an unknown order (payments: what a refund may be taken of). */
  async statusOf(orderId: string): Promise<OrderStatus | null> {
    const row = await this.tx.withManager((m) =>
      m
        .getRepository(OrderEntity)
        .findOne({ where: { id: orderId }, select: { id: true, status: true } }),
    );
    return row?.status ?? null;
  }

  /**
   * The ids of the orders in one of `statuses`, as a subquery for another module's statement on
   * the same manager (payments: the payments of orders still PAYMENT_PENDING), e.g.
   * `qb.andWhere(\`p.order_id IN (${sub.getQuery()})\`).setParameters(sub.getParameters())`.
   * Its one parameter is named `orderStatuses`.
   */
  idsInStatusQuery(
    m: EntityManager,
    statuses: readonly OrderStatus[],
  ): SelectQueryBuilder<OrderEntity> {
    return m
      .getRepository(OrderEntity)
      .createQueryBuilder('status_order')
      .select('status_order.id')
      .where('status_order.status IN (:...orderStatuses)', { orderStatuses: statuses });
  }

  /** Whether the customer has a paid order (PAID_STATUSES) with the product (catalog: who may review). */
  async hasPaidOrderWith(userId: string, productId: string): Promise<boolean> {
    return this.tx.withManager((m) =>
      m
        .getRepository(OrderItemEntity)
        .createQueryBuilder('i')
        .innerJoin('i.order', 'o')
        .where('i.productId = :productId', { productId })
        .andWhere('o.userId = :userId', { userId })
        .andWhere('o.status IN (:...paid)', { paid: PAID_STATUSES })
        .getExists(),
    );
  }

  /** The products in the customer's paid orders (catalog: recommendations for the customer). */
  async productsBoughtBy(userId: string): Promise<string[]> {
    const rows: { productId: string }[] = await this.tx.withManager((m) =>
      m
        .getRepository(OrderItemEntity)
        .createQueryBuilder('i')
        .innerJoin('i.order', 'o')
        .select('i.productId', 'productId')
        .distinct(true)
        .where('o.userId = :userId', { userId })
        .andWhere('o.status IN (:...paid)', { paid: PAID_STATUSES })
        .getRawMany(),
    );
    return rows.map((r) => r.productId);
  }

  /**
   * Every line of a paid order as (`order_id`, `product_id`), a subquery for another module's
   * statement on the same manager (catalog: recomputing "bought together"), e.g.
   * `FROM (${sub.getQuery()}) a JOIN (${sub.getQuery()}) b ON b.order_id = a.order_id`
   * with `setParameters(sub.getParameters())`. Its one parameter is named `paidStatuses`.
   */
  paidLinesQuery(m: EntityManager): SelectQueryBuilder<OrderItemEntity> {
    return m
      .getRepository(OrderItemEntity)
      .createQueryBuilder('paid_line')
      .innerJoin('paid_line.order', 'paid_order')
      .select('paid_line.orderId', 'order_id')
      .addSelect('paid_line.productId', 'product_id')
      .where('paid_order.status IN (:...paidStatuses)', { paidStatuses: PAID_STATUSES });
  }

  /** An order's lines as (product, quantity), by product id (inventory: releasing or committing its stock). */
  async findStockLines(orderId: string): Promise<{ productId: string; quantity: number }[]> {
    const lines = await this.tx.withManager((m) =>
      m.getRepository(OrderItemEntity).find({
        select: { productId: true, quantity: true },
        where: { orderId },
        order: { productId: 'ASC' },
      }),
    );
    return lines.map((l) => ({ productId: l.productId, quantity: l.quantity }));
  }
}
