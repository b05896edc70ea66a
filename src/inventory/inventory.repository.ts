import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { InventoryItemEntity } from './entities/inventory-item.entity';
import { StockMovementEntity } from './entities/stock-movement.entity';
import { recordOnCommit } from './stock-ledger';

/** The most units one product can have on hand (the column is a PostgreSQL integer). */
export const MAX_ON_HAND = 2_147_483_647;

export interface StockLevel {
  onHand: number;
  reserved: number;
}

/**
 * Stock rows and their ledger for everything but orders (order-driven moves are in
 * stock-reservation.repository.ts): a new product's stock, admin adjustments, reads.
 */
@Injectable()
export class InventoryRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * A new product's inventory row (on hand = `onHand`, nothing reserved) and its 'initial'
   * ledger row. Call inside the transaction that inserts the product.
   */
  async createItem(productId: string, onHand: number, actorId: string, at: Date): Promise<void> {
    await this.tx.withManager(async (m) => {
      await m
        .getRepository(InventoryItemEntity)
        .insert({ productId, onHand, reserved: 0, updatedAt: at });
      await m.getRepository(StockMovementEntity).insert({
        productId,
        kind: 'initial',
        onHandDelta: onHand,
        reservedDelta: 0,
        reason: 'product created',
        actorId,
        createdAt: at,
      });
    });
  }

  /**
   * Adds `delta` to on-hand with its ledger row, unless that would take it below what is reserved,
   * below zero or past MAX_ON_HAND. The row is locked first (waiting for a reservation or release
   * being committed) and the guarded UPDATE is a statement of its own, so it decides on the
   * committed row: a single UPDATE would judge a row still being released by its snapshot and skip
   * it without waiting — a write-off refused while the stock for it was being freed. The ledger row
   * goes with the COMMIT (recordOnCommit). Returns the new level, `{ refused: row }` (the locked row
   * the guard refused), or null for an unknown product.
   */
  adjust(
    productId: string,
    delta: number,
    reason: string,
    actorId: string,
    at: Date,
  ): Promise<StockLevel | { refused: StockLevel } | null> {
    return this.tx.run(() =>
      this.tx.withManager(async (m) => {
        const items = m.getRepository(InventoryItemEntity);
        const locked = await items.findOne({
          where: { productId },
          lock: { mode: 'pessimistic_write' },
        });
        if (!locked) return null;
        const moved = await m
          .createQueryBuilder()
          .update(InventoryItemEntity)
          .set({ onHand: () => 'on_hand + :delta', updatedAt: at })
          .where('product_id = :productId', { productId, delta })
          // in bigint: an int4 sum past its range would fail the statement instead of the guard
          .andWhere('on_hand::bigint + :delta >= reserved')
          .andWhere('on_hand::bigint + :delta >= 0')
          .andWhere(`on_hand::bigint + :delta <= ${MAX_ON_HAND}`)
          .returning(['onHand', 'reserved'])
          .execute();
        const row = (moved.raw as { on_hand: number; reserved: number }[])[0];
        if (!row) return { refused: { onHand: locked.onHand, reserved: locked.reserved } };
        recordOnCommit(this.tx, [
          {
            productId,
            kind: 'adjust',
            onHandDelta: delta,
            reservedDelta: 0,
            reason,
            actorId,
            createdAt: at,
          },
        ]);
        return { onHand: row.on_hand, reserved: row.reserved };
      }),
    );
  }

  /**
   * Locks the product's stock row until the caller's transaction ends (`FOR UPDATE`, as a
   * reservation does), waiting for the reservations and releases that hold it to commit.
   */
  async lockItem(productId: string): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(InventoryItemEntity).findOne({
        select: { productId: true },
        where: { productId },
        lock: { mode: 'pessimistic_write' },
      }),
    );
  }

  async level(productId: string): Promise<StockLevel | null> {
    const item = await this.tx.withManager((m) =>
      m.getRepository(InventoryItemEntity).findOneBy({ productId }),
    );
    return item ? { onHand: item.onHand, reserved: item.reserved } : null;
  }
}
