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

/** A product's availability (on_hand − reserved) as a committed reservation left it. */
export interface Availability {
  productId: string;
  available: number;
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
   * Reserves every line or none, as the order transaction's final statements, sent together with
   * COMMIT (TransactionHost.sendWithCommit, last): the hot row locks are held only while the server
   * runs them and commits, with no round trip in between. Two statements in that one message:
   *
   * 1. `SELECT … FOR UPDATE` takes the inventory row locks in ascending product id (the LockRows
   *    step runs above the sort), waiting for whoever holds them;
   * 2. a statement with a fresh READ COMMITTED snapshot, taken after those locks are ours, so it
   *    sees exactly the row versions we locked, which nobody else can change before our commit.
   *    A guarded `UPDATE … SET reserved = reserved + q WHERE on_hand - reserved >= q` decides and
   *    writes from that same version; lines it did not move are short and raise
   *    `insufficient_stock` with the shortfalls as JSON in the error's detail (`shortfallsOf`),
   *    which aborts the transaction, the lines that did move included.
   *
   * Why not one statement (issue 11, defect 1): every part of a statement shares the snapshot
   * taken when it started, before it waited for the row locks. The old single statement tested
   * availability on the version its FOR UPDATE locked (the newest), but its UPDATE scanned the
   * snapshot's older version, built the new row from it (e.g. reserved 10 + 1 against on_hand 10,
   * when a release committed meanwhile had made it 9), and PostgreSQL checks CHECK constraints on
   * that row BEFORE it notices the version was superseded and re-evaluates on the newest one
   * (EvalPlanQual) — so `inventory_reserved_within_on_hand` (23514) fired for a reservation that
   * was valid. A guarded UPDATE in the same statement cannot fix it either: its WHERE is judged on
   * the snapshot version, and re-checked on the newest version only for rows that passed, so a
   * unit released meanwhile would be refused as short. test/e2e/reservation-race.test.ts.
   *
   * On success the statement answers each product's availability after its update, and
   * `onCommitted` gets it once the COMMIT has succeeded (the sold-out marks, sold-out.ts).
   */
  reserveAllOnCommit(
    orderId: string,
    lines: StockLine[],
    mapError: (err: unknown) => unknown,
    onCommitted?: (left: Availability[]) => void,
  ): void {
    this.tx.sendWithCommit(
      `SELECT 1 FROM inventory_items
        WHERE product_id = ANY($1::uuid[])
        ORDER BY product_id
          FOR UPDATE;
       WITH req AS (
         SELECT * FROM unnest($1::uuid[], $2::int[]) AS r(product_id, quantity)
       ), moved AS (
         UPDATE inventory_items i
            SET reserved = i.reserved + r.quantity, updated_at = $3::timestamptz
           FROM req r
          WHERE i.product_id = r.product_id AND i.on_hand - i.reserved >= r.quantity
         RETURNING i.product_id, r.quantity, i.on_hand - i.reserved AS available
       ), ledger AS (
         INSERT INTO stock_movements
           (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
         SELECT product_id, 'reserve', 0, quantity, 'order', $4::uuid, $3::timestamptz FROM moved
       ), short AS (
         SELECT r.product_id, r.quantity, coalesce(i.on_hand - i.reserved, 0) AS available
           FROM req r LEFT JOIN inventory_items i ON i.product_id = r.product_id
          WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.product_id = r.product_id)
       )
       SELECT NULL::uuid AS "productId", NULL::int AS available
         FROM (SELECT raise_insufficient_stock(jsonb_agg(jsonb_build_object(
                 'productId', product_id, 'requested', quantity, 'available', available) ORDER BY product_id))
                 FROM short HAVING count(*) > 0) raised
       UNION ALL
       SELECT product_id, available FROM moved`,
      [lines.map((l) => l.productId), lines.map((l) => l.quantity), this.clock.now(), orderId],
      {
        last: true,
        mapError,
        onRows: onCommitted && ((rows) => onCommitted(rows as Availability[])),
      },
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
