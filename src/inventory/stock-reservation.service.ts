import { Injectable } from '@nestjs/common';
import { ProductRepository } from '../catalog/product.repository';
import { productsUnavailable } from '../catalog/product-not-found';
import { DomainError } from '../common/errors/domain-error';
import { TransactionHost, pgConstraint, pgErrorCode } from '../database/transaction-host';
import { SoldOutMarks } from './sold-out';
import {
  Availability,
  Shortfall,
  StockLine,
  StockReservationRepository,
  offSaleOf,
  shortfallsOf,
} from './stock-reservation.repository';

/** The products of these availability figures that are at 0. */
const soldOut = (levels: Availability[]): string[] =>
  levels.filter((l) => Number(l.available) === 0).map((l) => l.productId);

/** 409 INSUFFICIENT_STOCK naming the short products (the normal path's and the fast path's). */
export const insufficient = (products: (Shortfall | Omit<Shortfall, 'available'>)[]) =>
  new DomainError('INSUFFICIENT_STOCK', 'Not enough stock for some products.', {
    extensions: { products },
  });

/**
 * The reservation's failure as the client sees it: its own shortfall → 409 INSUFFICIENT_STOCK
 * naming the short products; a product taken off sale meanwhile → 409 PRODUCT_UNAVAILABLE. A
 * CHECK `inventory_reserved_within_on_hand` violation (23514) → INSUFFICIENT_STOCK too:
 * the statement tests availability itself and should never let one through (issue 11, defect 1),
 * but if it ever does the constraint has refused an oversell, which is a 409, never a 500. The
 * product is read from the violation's "Failing row contains (product_id, …)" detail when it is
 * one of the lines, else every line is named. Any other error is returned unchanged.
 */
function reservationError(err: unknown, lines: StockLine[]): unknown {
  const short = shortfallsOf(err);
  if (short) return insufficient(short);
  const offSale = offSaleOf(err);
  if (offSale) return productsUnavailable(offSale);
  if (pgErrorCode(err) === '23514' && pgConstraint(err) === 'inventory_reserved_within_on_hand') {
    const detail = (err as { driverError?: { detail?: string } }).driverError?.detail ?? '';
    const failing = /\(([0-9a-f-]{36}),/i.exec(detail)?.[1]?.toLowerCase();
    const named = lines.filter((l) => l.productId.toLowerCase() === failing);
    return insufficient(
      (named.length > 0 ? named : lines).map((l) => ({
        productId: l.productId,
        requested: l.quantity,
      })),
    );
  }
  return err;
}

/**
 * Pessimistic stock reservation for orders. Must run inside the order's transaction, and is
 * called last there: the inventory row locks are the hottest in the system, so they are held
 * only for the check, one UPDATE and the commit.
 */
@Injectable()
export class StockReservationService {
  constructor(
    private readonly stock: StockReservationRepository,
    private readonly soldOut: SoldOutMarks,
    private readonly tx: TransactionHost,
    /** The catalog's: paid units count towards popularity (`units_sold`). */
    private readonly products: ProductRepository,
  ) {}

  /**
   * Locks, checks every line and reserves, as the transaction's final statement sent with its
   * COMMIT (call last in the use case): the hot row locks are held for that statement and the
   * commit only. A shortfall aborts the whole transaction with INSUFFICIENT_STOCK naming the
   * short products.
   *
   * What the reservation read under the row locks feeds the sold-out marks (sold-out.ts): the
   * products a committed reservation left at 0 available, or that a refused one found at 0. The
   * generation is taken now, before the commit, so a release committed after it wins.
   */
  reserveOnCommit(orderId: string, lines: StockLine[]): void {
    const generation = this.soldOut.generation();
    this.stock.reserveAllOnCommit(
      orderId,
      lines,
      (err) => {
        const short = shortfallsOf(err);
        if (short) this.soldOut.markSoldOut(soldOut(short), generation);
        return reservationError(err, lines);
      },
      (left) => this.soldOut.markSoldOut(soldOut(left), generation),
    );
  }

  /**
   * Gives an order's reserved units back. Call only from the transition that ends the hold.
   * Once it commits (or may have: a COMMIT whose outcome is unknown), the products' sold-out marks
   * are cleared — a clear is always safe, a mark left would refuse buyers of units given back.
   */
  async release(orderId: string): Promise<void> {
    const lines = await this.stock.reservedLines(orderId);
    // the inventory rows are locked and updated in the COMMIT's message (settleOnCommit)
    this.stock.settleOnCommit('release', orderId, lines);
    this.tx.afterCommitOrUnknown(() => this.soldOut.cleared(lines.map((l) => l.productId)));
  }

  /**
   * Turns an order's reservation into a sale (settled in the COMMIT's message), counted towards
   * the products' popularity (the catalog's units_sold: once per order, as the transition to PAID
   * happens once — its guarded UPDATE holds the order row). Call only from that transition.
   */
  async commit(orderId: string): Promise<void> {
    const lines = await this.stock.reservedLines(orderId);
    this.stock.settleOnCommit('commit', orderId, lines);
    await this.products.addUnitsSold(lines, 1);
  }

  /**
   * A fully refunded order no longer counts as sold for popularity (units_sold counts paid
   * orders). Call only from the transition to REFUNDED, which happens once.
   */
  async uncountSale(orderId: string): Promise<void> {
    await this.products.addUnitsSold(await this.stock.reservedLines(orderId), -1);
  }
}
