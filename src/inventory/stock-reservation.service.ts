import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { Shortfall, StockLine, StockReservationRepository, shortfallsOf } from './stock-reservation.repository';

const insufficient = (products: Shortfall[]) =>
  new DomainError('INSUFFICIENT_STOCK', 'Not enough stock for some products.', { extensions: { products } });

/**
 * Pessimistic stock reservation for orders. Must run inside the order's transaction, and is
 * called last there: the inventory row locks are the hottest in the system, so they are held
 * only for the check, one UPDATE and the commit.
 */
@Injectable()
export class StockReservationService {
  constructor(private readonly stock: StockReservationRepository) {}

  /**
   * Locks, checks every line and reserves, as the transaction's final statement sent with its
   * COMMIT (call last in the use case): the hot row locks are held for that statement and the
   * commit only. A shortfall aborts the whole transaction with INSUFFICIENT_STOCK naming the
   * short products.
   */
  reserveOnCommit(orderId: string, lines: StockLine[]): void {
    this.stock.reserveAllOnCommit(orderId, lines, (err) => {
      const short = shortfallsOf(err);
      return short ? insufficient(short) : err;
    });
  }

  /** Gives an order's reserved units back. Call only from the transition that ends the hold. */
  async release(orderId: string): Promise<void> {
    const lines = await this.stock.orderLines(orderId);
    await this.stock.lock(lines.map((l) => l.productId));
    await this.stock.apply('release', orderId, lines);
  }

  /** Turns an order's reservation into a sale. Call only from the transition to PAID. */
  async commit(orderId: string): Promise<void> {
    const lines = await this.stock.orderLines(orderId);
    await this.stock.lock(lines.map((l) => l.productId));
    await this.stock.apply('commit', orderId, lines);
    await this.stock.addUnitsSold(lines);
  }

  /**
   * A fully refunded order no longer counts as sold for popularity (units_sold counts paid
   * orders). Call only from the transition to REFUNDED, which happens once.
   */
  async uncountSale(orderId: string): Promise<void> {
    await this.stock.addUnitsSold(await this.stock.orderLines(orderId), -1);
  }
}
