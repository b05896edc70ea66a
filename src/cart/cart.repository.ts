import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

export interface CartLineRow {
  productId: string;
  name: string;
  quantity: number;
  priceAmount: string;
  currency: string;
  active: boolean;
}

/** The only place that builds SQL for carts (one cart per customer, lines keyed by product). */
@Injectable()
export class CartRepository {
  constructor(private readonly tx: TransactionHost) {}

  async lines(userId: string): Promise<CartLineRow[]> {
    return this.tx.query(
      `SELECT c.product_id AS "productId", p.name, c.quantity, p.price_amount AS "priceAmount",
              p.currency, p.active
         FROM cart_items c JOIN products p ON p.id = c.product_id
        WHERE c.user_id = $1
        ORDER BY c.product_id`,
      [userId],
    );
  }

  async setQuantity(userId: string, productId: string, quantity: number, at: Date): Promise<void> {
    await this.tx.query(
      `INSERT INTO cart_items (user_id, product_id, quantity, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity,
                                                      updated_at = EXCLUDED.updated_at`,
      [userId, productId, quantity, at],
    );
  }

  async removeLine(userId: string, productId: string): Promise<void> {
    await this.tx.query(`DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2`, [
      userId,
      productId,
    ]);
  }

  /** Empties the cart; returns the lines removed (checkout reads and clears in one statement). */
  async clear(userId: string): Promise<{ productId: string; quantity: number }[]> {
    return this.tx.query(
      `DELETE FROM cart_items WHERE user_id = $1
       RETURNING product_id AS "productId", quantity`,
      [userId],
    );
  }

  async productExists(productId: string): Promise<boolean> {
    const rows: unknown[] = await this.tx.query(
      `SELECT 1 FROM products WHERE id = $1 AND active`,
      [productId],
    );
    return rows.length > 0;
  }
}
