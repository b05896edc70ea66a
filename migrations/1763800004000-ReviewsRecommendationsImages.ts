import { MigrationInterface, QueryRunner } from 'typeorm';

/** Reviews (one per customer and product), "bought together" neighbours, product images. */
export class ReviewsRecommendationsImages1763800004000 implements MigrationInterface {
  name = 'ReviewsRecommendationsImages1763800004000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE reviews (
        id uuid PRIMARY KEY,
        product_id uuid NOT NULL REFERENCES products (id),
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
        comment text NOT NULL DEFAULT '' CHECK (length(comment) <= 4000),
        created_at timestamptz NOT NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX reviews_one_per_customer ON reviews (product_id, user_id)`);
    await q.query(
      `CREATE INDEX reviews_product_recent_idx ON reviews (product_id, created_at DESC, id DESC)`,
    );
    await q.query(`
      CREATE TABLE product_recommendations (
        product_id uuid NOT NULL REFERENCES products (id),
        recommended_id uuid NOT NULL REFERENCES products (id),
        score integer NOT NULL CHECK (score > 0),
        computed_at timestamptz NOT NULL,
        PRIMARY KEY (product_id, recommended_id),
        CHECK (product_id <> recommended_id)
      )`);
    await q.query(`
      CREATE TABLE product_images (
        id uuid PRIMARY KEY,
        product_id uuid NOT NULL REFERENCES products (id),
        storage_key text NOT NULL UNIQUE,
        content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
        size_bytes integer NOT NULL CHECK (size_bytes BETWEEN 1 AND 10485760),
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready')),
        created_at timestamptz NOT NULL,
        ready_at timestamptz
      )`);
    await q.query(
      `CREATE INDEX product_images_product_idx ON product_images (product_id, created_at)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE product_images`);
    await q.query(`DROP TABLE product_recommendations`);
    await q.query(`DROP TABLE reviews`);
  }
}
