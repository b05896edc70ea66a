import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What catalog reads need: a weighted full-text vector (name A, description B) with a GIN
 * index, counters for ranking (units sold, rating sum/count) kept on the product row, and
 * keyset indexes for the sorts.
 */
export class CatalogReads1763800003000 implements MigrationInterface {
  name = 'CatalogReads1763800003000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE products
        ADD COLUMN search tsvector GENERATED ALWAYS AS (
          setweight(to_tsvector('simple', name), 'A') ||
          setweight(to_tsvector('simple', description), 'B')) STORED,
        ADD COLUMN units_sold integer NOT NULL DEFAULT 0 CHECK (units_sold >= 0),
        ADD COLUMN rating_sum integer NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
        ADD COLUMN rating_count integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0)`);
    await q.query(`CREATE INDEX products_search_idx ON products USING gin (search)`);
    await q.query(
      `CREATE INDEX products_newest_idx ON products (created_at DESC, id DESC) WHERE active`,
    );
    await q.query(`CREATE INDEX products_price_idx ON products (price_amount, id) WHERE active`);
    await q.query(
      `CREATE INDEX products_popular_idx ON products (units_sold DESC, id DESC) WHERE active`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX products_popular_idx`);
    await q.query(`DROP INDEX products_price_idx`);
    await q.query(`DROP INDEX products_newest_idx`);
    await q.query(`DROP INDEX products_search_idx`);
    await q.query(
      `ALTER TABLE products DROP COLUMN search, DROP COLUMN units_sold, DROP COLUMN rating_sum,
         DROP COLUMN rating_count`,
    );
  }
}
