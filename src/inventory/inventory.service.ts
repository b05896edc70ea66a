import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { CatalogCache } from '../catalog/catalog-cache';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { StockAdjustmentDto, StockLevelDto } from './dto/inventory.dto';
import { InventoryRepository, MAX_ON_HAND } from './inventory.repository';
import { SoldOutMarks } from './sold-out';
import { productNotFound } from '../catalog/product-not-found';

/** Stock outside orders: a new product's stock, and admin adjustments (restocks, write-offs). */
@Injectable()
export class InventoryService {
  constructor(
    private readonly inventory: InventoryRepository,
    private readonly soldOut: SoldOutMarks,
    private readonly cache: CatalogCache,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  /**
   * A product being taken off sale: call in the transaction that does it, after its UPDATE of
   * the product (the order every other writer of both rows takes: a payment updates the product's
   * units sold, then settles its stock in the COMMIT message — the reverse deadlocked).
   *
   * - Its stock row is locked, so the change waits for the checkouts that hold the row (they
   *   read the product's uncommitted change as on sale, and commit before it is answered), and
   *   the reservations after it find it off sale (`reserve_stock` checks under that lock: a
   *   checkout's price snapshot, read at its BEGIN without a lock, may be older than the change).
   * - Its sold-out mark is dropped once that commits, so checkouts of it get the normal path's
   *   409 PRODUCT_UNAVAILABLE rather than the fast path's INSUFFICIENT_STOCK (no reservation
   *   reaches an inactive product to set or renew the mark meanwhile).
   */
  async takingOffSale(productId: string): Promise<void> {
    await this.inventory.lockItem(productId);
    this.tx.afterCommitOrUnknown(() => this.soldOut.cleared([productId]));
  }

  /**
   * A product being repriced or renamed (what an order line copies): call in the transaction
   * that does it, after its UPDATE of the product (the same order as takingOffSale). Its stock
   * row is locked, so the change waits for the checkouts holding the row (their orders carry the
   * old price and name and commit before it is answered), and the reservations after it find
   * their lines copied from an older snapshot: `reserve_stock` then fails the attempt with 40001
   * and the checkout runs again with the new price and name.
   */
  async changingOrderTerms(productId: string): Promise<void> {
    await this.inventory.lockItem(productId);
  }

  /**
   * The stock of a product being created, with its 'initial' ledger row. Call inside the
   * transaction that inserts the product (CatalogAdminService.createProduct).
   */
  createItem(productId: string, initialStock: number, actorId: string, at: Date): Promise<void> {
    return this.inventory.createItem(productId, initialStock, actorId, at);
  }

  /**
   * Ledgered on-hand change; never below what is reserved (409 STOCK_BELOW_RESERVED). Once
   * committed, the product's sold-out mark is cleared and catalog readers see the new stock.
   */
  async adjustStock(
    actor: Principal,
    productId: string,
    dto: StockAdjustmentDto,
  ): Promise<StockLevelDto> {
    const level = await this.inventory.adjust(
      productId,
      dto.delta,
      dto.reason,
      actor.userId,
      this.clock.now(),
    );
    if (!level) throw productNotFound();
    if ('refused' in level) {
      const current = level.refused;
      if (current.onHand + dto.delta > MAX_ON_HAND) {
        throw new DomainError(
          'VALIDATION_FAILED',
          `On-hand stock cannot exceed ${MAX_ON_HAND} units.`,
          {
            errors: [
              {
                field: 'delta',
                message: `on hand would be ${current.onHand + dto.delta}, above ${MAX_ON_HAND}`,
              },
            ],
          },
        );
      }
      throw new DomainError(
        'STOCK_BELOW_RESERVED',
        'On-hand stock cannot fall below what is reserved.',
        {
          extensions: { onHand: current.onHand, reserved: current.reserved, delta: dto.delta },
        },
      );
    }
    // once committed (with an Idempotency-Key the interceptor's transaction is still open)
    this.tx.afterCommitOrUnknown(() => this.soldOut.cleared([productId]));
    await this.cache.invalidate();
    return { ...level, available: level.onHand - level.reserved };
  }
}
