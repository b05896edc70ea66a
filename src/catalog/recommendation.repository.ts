import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { PAID_STATUSES } from '../orders/order-state-machine';
import type { ProductRow } from './product.repository';

const SUMMARY = `p.id, p.sku, p.name, p.description, p.price_amount AS "priceAmount", p.currency,
  p.category_id AS "categoryId", p.image_url AS "imageUrl", p.active,
  (i.on_hand - i.reserved) AS available, p.rating_sum AS "ratingSum",
  p.rating_count AS "ratingCount", p.created_at AS "createdAt", p.updated_at AS "updatedAt"`;

/** SQL for "bought together" neighbours. */
@Injectable()
export class RecommendationRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Recomputes every product's top-K neighbours from paid orders (how many paid orders
   * contained both), replacing the table's content. Call inside a transaction: readers see the
   * old set until it commits.
   */
  async recompute(topK: number, at: Date): Promise<number> {
    await this.tx.query(`DELETE FROM product_recommendations`);
    const rows = await this.tx.query(
      `INSERT INTO product_recommendations (product_id, recommended_id, score, computed_at)
       SELECT product_id, recommended_id, score, $2 FROM (
         SELECT a.product_id, b.product_id AS recommended_id, count(DISTINCT a.order_id)::int AS score,
                row_number() OVER (PARTITION BY a.product_id
                                   ORDER BY count(DISTINCT a.order_id) DESC, b.product_id) AS rank
           FROM order_items a
           JOIN order_items b ON b.order_id = a.order_id AND b.product_id <> a.product_id
           JOIN orders o ON o.id = a.order_id AND o.status = ANY($3::text[])
          GROUP BY a.product_id, b.product_id
       ) ranked
       WHERE rank <= $1
       RETURNING 1`,
      [topK, at, PAID_STATUSES],
    );
    return rows.length;
  }

  async alsoBought(productId: string, limit: number): Promise<ProductRow[]> {
    return this.tx.query(
      `SELECT ${SUMMARY} FROM product_recommendations r
         JOIN products p ON p.id = r.recommended_id AND p.active
         JOIN inventory_items i ON i.product_id = p.id
        WHERE r.product_id = $1
        ORDER BY r.score DESC, p.id
        LIMIT $2`,
      [productId, limit],
    );
  }

  /** Neighbours of everything the customer bought, minus what they bought, by summed score. */
  async forCustomer(userId: string, limit: number): Promise<ProductRow[]> {
    return this.tx.query(
      `WITH bought AS (
         SELECT DISTINCT i.product_id FROM orders o JOIN order_items i ON i.order_id = o.id
          WHERE o.user_id = $1 AND o.status = ANY($3::text[])
       ), scored AS (
         SELECT r.recommended_id, sum(r.score) AS score FROM product_recommendations r
          WHERE r.product_id IN (SELECT product_id FROM bought)
            AND r.recommended_id NOT IN (SELECT product_id FROM bought)
          GROUP BY r.recommended_id
       )
       SELECT ${SUMMARY} FROM scored s
         JOIN products p ON p.id = s.recommended_id AND p.active
         JOIN inventory_items i ON i.product_id = p.id
        ORDER BY s.score DESC, p.id
        LIMIT $2`,
      [userId, limit, PAID_STATUSES],
    );
  }
}
