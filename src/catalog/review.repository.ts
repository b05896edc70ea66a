import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { PAID_STATUSES } from '../orders/order-state-machine';

export interface ReviewRow {
  id: string;
  rating: number;
  comment: string;
  authorName: string;
  createdAt: Date;
}

/** SQL for reviews and the rating counters they keep on the product row. */
@Injectable()
export class ReviewRepository {
  constructor(private readonly tx: TransactionHost) {}

  /** Whether the customer has a paid order containing the product. */
  async hasBought(userId: string, productId: string): Promise<boolean> {
    const rows = await this.tx.query(
      `SELECT 1 FROM orders o JOIN order_items i ON i.order_id = o.id
        WHERE o.user_id = $1 AND i.product_id = $2
          AND o.status = ANY($3::text[])
        LIMIT 1`,
      [userId, productId, PAID_STATUSES],
    );
    return rows.length > 0;
  }

  /**
   * Inserts the review and adds it to the product's rating counters in one statement (atomic
   * increments: concurrent reviews never lose an update). Returns false if this customer
   * already reviewed the product (unique index).
   */
  async insert(r: { id: string; productId: string; userId: string; rating: number; comment: string; at: Date }): Promise<boolean> {
    const rows = await this.tx.query(
      `WITH review AS (
         INSERT INTO reviews (id, product_id, user_id, rating, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (product_id, user_id) DO NOTHING
         RETURNING product_id, rating
       )
       UPDATE products p SET rating_sum = p.rating_sum + review.rating,
                             rating_count = p.rating_count + 1
         FROM review WHERE p.id = review.product_id
       RETURNING p.id`,
      [r.id, r.productId, r.userId, r.rating, r.comment, r.at],
    );
    return rows.length > 0;
  }

  async page(productId: string, limit: number, after: { at: string; id: string } | null): Promise<ReviewRow[]> {
    return this.tx.query(
      `SELECT r.id, r.rating, r.comment, u.name AS "authorName", r.created_at AS "createdAt"
         FROM reviews r JOIN users u ON u.id = r.user_id
        WHERE r.product_id = $1
          AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2::timestamptz, $3::uuid))
        ORDER BY r.created_at DESC, r.id DESC
        LIMIT $4`,
      [productId, after?.at ?? null, after?.id ?? null, limit],
    );
  }
}
