import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { TransactionHost, pgErrorCode } from '../database/transaction-host';

export interface StockLine {
  productId: string;
  quantity: number;
}

export interface LockedStock {
  productId: string;
  onHand: number;
  reserved: number;
}

type MovementKind = 'reserve' | 'release' | 'commit';

export interface Shortfall {
  productId: string;
  requested: number;
  available: number;
}

/** The shortfalls carried by the reservation's `insufficient_stock` error; null for any other error. */
export function shortfallsOf(err: unknown): Shortfall[] | null {
  const driverError = (err as { driverError?: { message?: string; detail?: string } }).driverError;
  if (pgErrorCode(err) !== 'P0001' || driverError?.message !== 'insufficient_stock') return null;
  return JSON.parse(driverError.detail ?? '[]') as Shortfall[];
}

/**
 * SQL for moving stock on behalf of an order. Callers hold the order's transaction; every
 * method locks inventory rows in ascending product id order (so multi-item orders cannot
 * deadlock each other) and writes one ledger row per line. The ledger's unique
 * (order_id, product_id, kind) index makes a second reserve/release/commit for the same order
 * impossible, whatever the application does.
 */
@Injectable()
export class StockReservationRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  /** SELECT … FOR UPDATE the inventory rows of these products, in id order. */
  async lock(productIds: string[]): Promise<LockedStock[]> {
    return this.tx.query(
      `SELECT product_id AS "productId", on_hand AS "onHand", reserved
         FROM inventory_items
        WHERE product_id = ANY($1::uuid[])
        ORDER BY product_id
          FOR UPDATE`,
      [productIds],
    );
  }

  /**
   * Reserves every line or none, in ONE statement that is the order transaction's final one,
   * sent together with COMMIT (TransactionHost.sendWithCommit, last): the hot row locks are held only
   * while the server runs this statement and commits. It locks the rows (FOR UPDATE, ascending
   * product id — the LockRows step runs above the sort), computes the shortfalls, and only when
   * there are none adds to `reserved` and writes the ledger rows; a shortfall raises
   * `insufficient_stock` with the shortfalls as JSON in the error's detail, which aborts the
   * transaction (`shortfallsOf` reads it). READ COMMITTED makes this safe: FOR UPDATE waits for
   * and then sees the latest row version, and the UPDATE re-checks the rows it already holds.
   */
  reserveAllOnCommit(orderId: string, lines: StockLine[], mapError: (err: unknown) => unknown): void {
    this.tx.sendWithCommit(
      `WITH req AS (
         SELECT * FROM unnest($1::uuid[], $2::int[]) AS r(product_id, quantity)
       ), locked AS (
         SELECT i.product_id, i.on_hand - i.reserved AS available, r.quantity
           FROM inventory_items i JOIN req r ON r.product_id = i.product_id
          ORDER BY i.product_id
            FOR UPDATE OF i
       ), short AS (
         SELECT r.product_id, r.quantity, coalesce(l.available, 0) AS available
           FROM req r LEFT JOIN locked l ON l.product_id = r.product_id
          WHERE coalesce(l.available, 0) < r.quantity
       ), moved AS (
         UPDATE inventory_items i
            SET reserved = i.reserved + l.quantity, updated_at = $3::timestamptz
           FROM locked l
          WHERE i.product_id = l.product_id AND NOT EXISTS (SELECT 1 FROM short)
         RETURNING i.product_id, l.quantity
       ), ledger AS (
         INSERT INTO stock_movements
           (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
         SELECT product_id, 'reserve', 0, quantity, 'order', $4::uuid, $3::timestamptz FROM moved
       )
       SELECT raise_insufficient_stock(jsonb_agg(jsonb_build_object(
                'productId', product_id, 'requested', quantity, 'available', available) ORDER BY product_id))
         FROM short HAVING count(*) > 0`,
      [lines.map((l) => l.productId), lines.map((l) => l.quantity), this.clock.now(), orderId],
      { last: true, mapError },
    );
  }

  /** The lines of an order, in product id order. */
  async orderLines(orderId: string): Promise<StockLine[]> {
    return this.tx.query(
      `SELECT product_id AS "productId", quantity FROM order_items
        WHERE order_id = $1 ORDER BY product_id`,
      [orderId],
    );
  }

  /**
   * Applies the movement to the (already locked) rows and records it in the ledger, in one
   * statement. reserve: reserved += q. release: reserved -= q. commit: on_hand -= q and
   * reserved -= q (the units leave the shop). CHECK constraints back every bound.
   */
  async apply(kind: MovementKind, orderId: string, lines: StockLine[]): Promise<void> {
    const [onHandSign, reservedSign] = { reserve: [0, 1], release: [0, -1], commit: [-1, -1] }[kind];
    await this.tx.query(
      `WITH lines AS (
         SELECT * FROM unnest($1::uuid[], $2::int[]) AS l(product_id, quantity)
       ), moved AS (
         UPDATE inventory_items i
            SET on_hand = i.on_hand + $3::int * l.quantity,
                reserved = i.reserved + $4::int * l.quantity,
                updated_at = $6
           FROM lines l
          WHERE i.product_id = l.product_id
         RETURNING i.product_id, l.quantity
       )
       INSERT INTO stock_movements
         (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
       SELECT product_id, $5, $3::int * quantity, $4::int * quantity, 'order', $7, $6 FROM moved`,
      [
        lines.map((l) => l.productId),
        lines.map((l) => l.quantity),
        onHandSign,
        reservedSign,
        kind,
        this.clock.now(),
        orderId,
      ],
    );
  }

  /**
   * Counts a sale towards each product's popularity (`units_sold`, the catalog's ranking input).
   * Called inside the commit, after the inventory rows are locked, so it runs once per order.
   */
  async addUnitsSold(lines: StockLine[], sign: 1 | -1 = 1): Promise<void> {
    await this.tx.query(
      `UPDATE products p SET units_sold = greatest(p.units_sold + $3::int * l.quantity, 0)
         FROM unnest($1::uuid[], $2::int[]) AS l(product_id, quantity)
        WHERE p.id = l.product_id`,
      [lines.map((l) => l.productId), lines.map((l) => l.quantity), sign],
    );
  }
}
