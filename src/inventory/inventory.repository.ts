import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

export interface StockLevel {
  onHand: number;
  reserved: number;
}

/** SQL for admin stock changes (order-driven moves are in stock-reservation.repository.ts). */
@Injectable()
export class InventoryRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Adds `delta` to on-hand with its ledger row, in one guarded statement: never below what is
   * reserved (nor below zero). Returns null when the guard refused or the product is unknown.
   */
  async adjust(
    productId: string,
    delta: number,
    reason: string,
    actorId: string,
    at: Date,
  ): Promise<StockLevel | null> {
    const rows: StockLevel[] = await this.tx.query(
      `WITH moved AS (
         UPDATE inventory_items SET on_hand = on_hand + $2, updated_at = $5
          WHERE product_id = $1 AND on_hand + $2 >= reserved AND on_hand + $2 >= 0
         RETURNING on_hand, reserved
       ), ledger AS (
         INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason, actor_id, created_at)
         SELECT $1, 'adjust', $2, 0, $3, $4, $5 FROM moved
       )
       SELECT on_hand AS "onHand", reserved FROM moved`,
      [productId, delta, reason, actorId, at],
    );
    return rows[0] ?? null;
  }

  async level(productId: string): Promise<StockLevel | null> {
    const rows: StockLevel[] = await this.tx.query(
      `SELECT on_hand AS "onHand", reserved FROM inventory_items WHERE product_id = $1`,
      [productId],
    );
    return rows[0] ?? null;
  }
}
