import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { StockLine, StockReservationRepository } from './stock-reservation.repository';

/**
 * Pessimistic stock reservation for orders. Must run inside the order's transaction, and is
 * called last there: the inventory row locks are the hottest in the system, so they are held
 * only for the check, one UPDATE and the commit.
 */
@Injectable()
export class StockReservationService {
  constructor(private readonly stock: StockReservationRepository) {}

  /** Locks, checks every line, reserves — or throws INSUFFICIENT_STOCK naming the short products. */
  async reserve(orderId: string, lines: StockLine[]): Promise<void> {
    const short = await this.stock.reserveAll(orderId, lines);
    if (short.length > 0) {
      throw new DomainError('INSUFFICIENT_STOCK', 'Not enough stock for some products.', {
        extensions: { products: short },
      });
    }
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
}
