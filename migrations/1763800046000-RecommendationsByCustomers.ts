import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * "Bought together" now needs three different customers per pair (RECOMMENDATION_MIN_CUSTOMERS):
 * the rows computed before counted orders, so a pair one customer bought — their basket, public
 * on every product's also-bought — stayed served until the next recomputation (within 10 min).
 * They are dropped here; customers see the top-ranked fallback until the next run fills the
 * table again. Nothing to restore on the way down: the next run recomputes it either way.
 */
export class RecommendationsByCustomers1763800046000 implements MigrationInterface {
  name = 'RecommendationsByCustomers1763800046000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM product_recommendations`);
  }

  async down(): Promise<void> {
    // (the table is derived data, recomputed every 10 minutes)
  }
}
