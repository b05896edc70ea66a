import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { TransactionHost, pgErrorCode } from '../database/transaction-host';
import { StockMovementEntity } from './entities/stock-movement.entity';

export interface StockLine {
  productId: string;
  quantity: number;
}

/** A product's availability (on_hand − reserved) as a committed reservation left it. */
export interface Availability {
  productId: string;
  available: number;
}

/** The moves of a reservation once it ends: given back (release) or sold (commit). */
type SettleKind = 'release' | 'commit';

export interface Shortfall {
  productId: string;
  requested: number;
  available: number;
}

/** The JSON detail of the reservation's own error `message` (raised by reserve_stock); null for any other error. */
function raisedDetail<T>(err: unknown, message: string): T | null {
  const driverError = (err as { driverError?: { message?: string; detail?: string } }).driverError;
  if (pgErrorCode(err) !== 'P0001' || driverError?.message !== message) return null;
  return JSON.parse(driverError.detail ?? '[]') as T;
}

/** The shortfalls carried by the reservation's `insufficient_stock` error; null for any other error. */
export const shortfallsOf = (err: unknown): Shortfall[] | null =>
  raisedDetail<Shortfall[]>(err, 'insufficient_stock');

/** The products off sale named by the reservation's `product_unavailable` error; null for any other error. */
export const offSaleOf = (err: unknown): string[] | null =>
  raisedDetail<string[]>(err, 'product_unavailable');

/**
 * Moving stock on behalf of an order. Callers hold the order's transaction; every method locks
 * inventory rows in ascending product id order (so multi-item orders cannot deadlock each other)
 * and writes one ledger row per line. The ledger's unique (order_id, product_id, kind) index
 * makes a second reserve/release/commit for the same order impossible, whatever the application
 * does. What an order reserved is read back from the ledger (reservedLines), not from the
 * order's own lines (the orders folder's table).
 */
@Injectable()
export class StockReservationRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  /**
   * Reserves every line or none, as the order transaction's final statement, sent together with
   * COMMIT (TransactionHost.sendWithCommit, last): the hot row locks are held only while the server
   * runs it and commits, with no round trip in between. The statement calls `reserve_stock`
   * (migrations/1763800011000-CheckoutFunctions.ts: a PL/pgSQL function, so its plans are kept for
   * the session instead of parsed and planned per checkout), which runs two statements:
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
   * Between the two, a statement of its own raises `product_unavailable` (`offSaleOf`) for a
   * product taken off sale: the price snapshot was read without a lock at BEGIN, and a checkout
   * queued on a hot row committed orders for a product whose deactivation had been answered
   * (migrations/1763800034000-ReserveOnSaleOnly.ts; the deactivation locks this row too, after its UPDATE).
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
   * (Inside a VOLATILE function each statement still takes its own snapshot under READ COMMITTED.)
   *
   * On success the statement answers each product's availability after its update, and
   * `onCommitted` gets it once the COMMIT has succeeded (the sold-out marks, sold-out.ts).
   *
   * Raw SQL: hot path of bench:flash-sale (a function call sent in COMMIT's message, see
   * docs/BENCHMARKS.md).
   */
  reserveAllOnCommit(
    orderId: string,
    lines: StockLine[],
    mapError: (err: unknown) => unknown,
    onCommitted?: (left: Availability[]) => void,
  ): void {
    this.tx.sendWithCommit(
      `SELECT "productId", available
         FROM reserve_stock($4::uuid, $1::uuid[], $2::int[], $3::timestamptz)`,
      [lines.map((l) => l.productId), lines.map((l) => l.quantity), this.clock.now(), orderId],
      {
        last: true,
        mapError,
        onRows: onCommitted && ((rows) => onCommitted(rows as Availability[])),
      },
    );
  }

  /** What the order reserved (its 'reserve' ledger rows), in product id order. */
  async reservedLines(orderId: string): Promise<StockLine[]> {
    const rows = await this.tx.withManager((m) =>
      m.getRepository(StockMovementEntity).find({
        select: { productId: true, reservedDelta: true },
        where: { orderId, kind: 'reserve' },
        order: { productId: 'ASC' },
      }),
    );
    return rows.map((r) => ({ productId: r.productId, quantity: r.reservedDelta }));
  }

  /**
   * Settles the order's reservation — release: reserved −= q; commit: on_hand −= q and
   * reserved −= q (the units leave the shop) — with its ledger rows, as a statement sent in the
   * message that carries the transaction's COMMIT (not last: a checkout's reservation is): the
   * inventory row locks are taken there, in product id order, and held only while the server
   * runs the message's statements and commits — not across the transition's round trips and the
   * event loop's turns, queueing every checkout of a hot product behind each cancel and payment.
   * The statement calls `settle_stock` (migrations/1763800029000-SettleStock.ts). CHECK
   * constraints back every bound; the ledger's unique (order, product, kind) makes a second
   * settle of one kind fail the transaction.
   */
  settleOnCommit(kind: SettleKind, orderId: string, lines: StockLine[]): void {
    if (lines.length === 0) return;
    this.tx.sendWithCommit(
      `SELECT settle_stock($1::text, $2::uuid, $3::uuid[], $4::int[], $5::timestamptz)`,
      [
        kind,
        orderId,
        lines.map((l) => l.productId),
        lines.map((l) => l.quantity),
        this.clock.now(),
      ],
    );
  }
}
