import { Injectable } from '@nestjs/common';
import { EntityManager, SelectQueryBuilder } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import { OrderEntity } from './entities/order.entity';
import { CancellationReason, HOLDS_RESERVATION, OrderStatus, sourcesOf } from './order-state-machine';
import { Order, OrderLine, OrderWithHistory, StatusChange } from './order.model';
import { toSafeInt } from '../common/money/safe-int';

interface OrderRow {
  id: string;
  user_id: string;
  status: OrderStatus;
  cancellation_reason: CancellationReason | null;
  currency: string;
  total_amount: string;
  refunded_amount: string;
  reservation_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

interface LineRow {
  order_id: string;
  product_id: string;
  sku: string;
  name: string;
  quantity: number;
  unit_price_amount: string;
  line_total_amount: string;
}

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
  reason?: string | null;
  actor: string;
  at: Date;
  /** Extra guard, e.g. only expire when the deadline has really passed. */
  reservationDueBy?: Date;
}

export interface PageCursor {
  createdAt: Date;
  id: string;
}

const COLUMNS = `id, user_id, status, cancellation_reason, currency, total_amount, refunded_amount,
  reservation_expires_at, created_at, updated_at`;

/** The only place that builds SQL for orders, their lines and their status history. */
@Injectable()
export class OrderRepository {
  constructor(private readonly tx: TransactionHost) {}

  /** Placeholders insert() uses; a statement passed to it numbers its own after these. */
  static readonly INSERT_PARAMS = 17;

  /**
   * The order, its lines, its first history rows — and `alongside` (e.g. the outbox event) —
   * in one statement, sent in the COMMIT's message (TransactionHost.sendWithCommit): nothing
   * reads the new order back inside its transaction, so it costs no round trip of its own.
   * Every placeholder is cast, as the values are inlined.
   */
  insertOnCommit(order: NewOrder, alongside?: { sql: string; params: unknown[] }): void {
    this.tx.sendWithCommit(
      `WITH ${alongside ? `extra AS (${alongside.sql}), ` : ''}o AS (
         INSERT INTO orders (id, user_id, status, currency, total_amount, reservation_expires_at,
                             created_at, updated_at)
         VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::timestamptz,
                 $7::timestamptz, $7::timestamptz)
         RETURNING id
       ), lines AS (
         INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_amount,
                                  line_total_amount)
         SELECT o.id, l.* FROM o, unnest($8::uuid[], $9::text[], $10::text[], $11::int[],
                                         $12::bigint[], $13::bigint[]) AS l
       )
       INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
       SELECT o.id, h.f, h.t, h.r, $17::text, $7::timestamptz
         FROM o, unnest($14::text[], $15::text[], $16::text[]) AS h(f, t, r)`,
      [
        order.id,
        order.userId,
        order.status,
        order.currency,
        order.totalAmount,
        order.reservationExpiresAt,
        order.createdAt,
        order.items.map((i) => i.productId),
        order.items.map((i) => i.sku),
        order.items.map((i) => i.name),
        order.items.map((i) => i.quantity),
        order.items.map((i) => i.unitPriceAmount),
        order.items.map((i) => i.lineTotalAmount),
        order.history.map((h) => h.from),
        order.history.map((h) => h.to),
        order.history.map((h) => h.reason),
        order.actor,
        ...(alongside?.params ?? []),
      ],
    );
  }

  /**
   * Moves the order to `to` only if its current status is one the transition table allows
   * (`UPDATE … WHERE status = ANY(:from)`), and records the change. Returns the previous status,
   * or null when the guard did not match (someone else already moved it, or it may not move).
   */
  async transition(orderId: string, t: Transition): Promise<OrderStatus | null> {
    const from = sourcesOf(t.to);
    const rows: { previous: OrderStatus }[] = await this.tx.query(
      `UPDATE orders o
          SET status = $2,
              cancellation_reason = CASE WHEN $2 = 'CANCELLED' THEN $4 ELSE o.cancellation_reason END,
              updated_at = $5
         FROM (SELECT id, status AS previous FROM orders WHERE id = $1 FOR UPDATE) prev
        WHERE o.id = prev.id
          AND o.status = ANY($3::text[])
          AND ($6::timestamptz IS NULL OR o.reservation_expires_at <= $6)
       RETURNING prev.previous`,
      [orderId, t.to, from, t.reason ?? null, t.at, t.reservationDueBy ?? null],
    );
    const previous = rows[0]?.previous;
    if (!previous) return null;
    await this.tx.query(
      `INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [orderId, previous, t.to, t.reason ?? null, t.actor, t.at],
    );
    return previous;
  }

  /** Pushes the reservation deadline out (never in) while a payment is in flight. */
  async extendReservation(orderId: string, until: Date): Promise<void> {
    await this.tx.query(
      `UPDATE orders SET reservation_expires_at = greatest(reservation_expires_at, $2)
        WHERE id = $1 AND status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')`,
      [orderId, until],
    );
  }

  /**
   * Adds a refund to the order, guarded in one statement: only after PAID, and never beyond
   * the total (the CHECK constraint backs this too). The status becomes REFUNDED when the
   * whole total is refunded, else PARTIALLY_REFUNDED. Returns null when the guard refused.
   */
  async applyRefund(
    orderId: string,
    amount: number,
    actor: string,
    at: Date,
  ): Promise<{ previous: OrderStatus; status: OrderStatus } | null> {
    const rows: { previous: OrderStatus; status: OrderStatus }[] = await this.tx.query(
      `UPDATE orders o
          SET refunded_amount = o.refunded_amount + $2,
              status = CASE WHEN o.refunded_amount + $2 = o.total_amount
                            THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END,
              updated_at = $3
         FROM (SELECT id, status AS previous FROM orders WHERE id = $1 FOR UPDATE) prev
        WHERE o.id = prev.id
          AND o.status = ANY($4::text[])
          AND $2 > 0
          AND o.refunded_amount + $2 <= o.total_amount
       RETURNING prev.previous, o.status`,
      [orderId, amount, at, sourcesOf('PARTIALLY_REFUNDED')],
    );
    const row = rows[0];
    if (!row) return null;
    await this.tx.query(
      `INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [orderId, row.previous, row.status, `refund ${amount}`, actor, at],
    );
    return row;
  }

  async findById(id: string): Promise<OrderWithHistory | null> {
    const rows: OrderRow[] = await this.tx.query(
      `SELECT ${COLUMNS} FROM orders WHERE id = $1`,
      [id],
    );
    if (!rows[0]) return null;
    const [order] = await this.withLines(rows);
    const history: {
      from_status: OrderStatus | null;
      to_status: OrderStatus;
      reason: string | null;
      actor: string;
      created_at: Date;
    }[] = await this.tx.query(
      `SELECT from_status, to_status, reason, actor, created_at
         FROM order_status_history WHERE order_id = $1 ORDER BY id`,
      [id],
    );
    return {
      ...order,
      history: history.map(
        (h): StatusChange => ({
          from: h.from_status,
          to: h.to_status,
          reason: h.reason,
          actor: h.actor,
          at: h.created_at,
        }),
      ),
    };
  }

  /** Newest first, keyset-paginated on (created_at, id); optional owner and status filters. */
  async page(
    filter: { userId?: string; status?: OrderStatus },
    limit: number,
    after: PageCursor | null,
  ): Promise<Order[]> {
    const rows: OrderRow[] = await this.tx.query(
      `SELECT ${COLUMNS} FROM orders
        WHERE ($1::uuid IS NULL OR user_id = $1)
          AND ($2::text IS NULL OR status = $2)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $5`,
      [
        filter.userId ?? null,
        filter.status ?? null,
        after?.createdAt ?? null,
        after?.id ?? null,
        limit,
      ],
    );
    return this.withLines(rows);
  }

  /** Unpaid orders whose reservation window has passed (for the sweeper). */
  async findOverdueReservations(now: Date, limit: number): Promise<string[]> {
    const rows: { id: string }[] = await this.tx.query(
      `SELECT id FROM orders
        WHERE status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')
          AND reservation_expires_at <= $1
        ORDER BY reservation_expires_at
        LIMIT $2`,
      [now, limit],
    );
    return rows.map((r) => r.id);
  }

  /**
   * The reservation deadline of an order that still holds its reservation (null otherwise):
   * a payment in flight extends it, so an expiry job that ran early learns when to look again.
   */
  async findReservationDeadline(id: string): Promise<Date | null> {
    const rows: { until: Date }[] = await this.tx.query(
      `SELECT reservation_expires_at AS until FROM orders
        WHERE id = $1 AND status = ANY($2::text[]) AND reservation_expires_at IS NOT NULL`,
      [id, HOLDS_RESERVATION],
    );
    return rows[0]?.until ?? null;
  }

  private async withLines(rows: OrderRow[]): Promise<Order[]> {
    if (rows.length === 0) return [];
    const lines: LineRow[] = await this.tx.query(
      `SELECT order_id, product_id, sku, name, quantity, unit_price_amount, line_total_amount
         FROM order_items WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, product_id`,
      [rows.map((r) => r.id)],
    );
    const byOrder = new Map<string, OrderLine[]>();
    for (const l of lines) {
      const list = byOrder.get(l.order_id) ?? [];
      list.push({
        productId: l.product_id,
        sku: l.sku,
        name: l.name,
        quantity: l.quantity,
        unitPriceAmount: toSafeInt(l.unit_price_amount),
        lineTotalAmount: toSafeInt(l.line_total_amount),
      });
      byOrder.set(l.order_id, list);
    }
    return rows.map((r) => ({
      id: r.id,
      userId: r.user_id,
      status: r.status,
      cancellationReason: r.cancellation_reason,
      currency: r.currency.trim(),
      totalAmount: toSafeInt(r.total_amount),
      refundedAmount: toSafeInt(r.refunded_amount),
      reservationExpiresAt: r.reservation_expires_at,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      items: byOrder.get(r.id) ?? [],
    }));
  }

  // ---- Reads for other modules: they ask here instead of reading the orders tables themselves.

  /** Whether the order exists (payments: refuses to pay or refund an unknown order). */
  async exists(orderId: string): Promise<boolean> {
    return this.tx.withManager((m) => m.getRepository(OrderEntity).existsBy({ id: orderId }));
  }

  /**
   * The ids of the orders in one of `statuses`, as a subquery for another module's statement on
   * the same manager (payments: the payments of orders still PAYMENT_PENDING), e.g.
   * `qb.andWhere(\`p.order_id IN (${sub.getQuery()})\`).setParameters(sub.getParameters())`.
   * Its one parameter is named `orderStatuses`.
   */
  idsInStatusQuery(m: EntityManager, statuses: readonly OrderStatus[]): SelectQueryBuilder<OrderEntity> {
    return m
      .getRepository(OrderEntity)
      .createQueryBuilder('status_order')
      .select('status_order.id')
      .where('status_order.status IN (:...orderStatuses)', { orderStatuses: statuses });
  }
}
