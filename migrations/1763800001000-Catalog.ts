import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Catalog and inventory. Stock invariants live in the database: reserved never negative and
 * never above on-hand; every stock change has a ledger row, and an order can reserve, release
 * or commit a product at most once (partial unique index).
 */
export class Catalog1763800001000 implements MigrationInterface {
  name = 'Catalog1763800001000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE categories (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        slug text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX categories_slug_key ON categories (slug)`);
    await q.query(`
      CREATE TABLE products (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        sku text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        description text NOT NULL DEFAULT '',
        price_amount bigint NOT NULL CHECK (price_amount >= 0),
        currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        category_id uuid REFERENCES categories (id),
        active boolean NOT NULL DEFAULT true,
        image_url text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX products_sku_key ON products (sku)`);
    await q.query(`CREATE INDEX products_category_idx ON products (category_id)`);
    await q.query(`
      CREATE TABLE inventory_items (
        product_id uuid PRIMARY KEY REFERENCES products (id),
        on_hand integer NOT NULL,
        reserved integer NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT inventory_on_hand_nonnegative CHECK (on_hand >= 0),
        CONSTRAINT inventory_reserved_nonnegative CHECK (reserved >= 0),
        CONSTRAINT inventory_reserved_within_on_hand CHECK (reserved <= on_hand)
      )`);
    await q.query(`
      CREATE TABLE stock_movements (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        product_id uuid NOT NULL REFERENCES products (id),
        kind text NOT NULL CHECK (kind IN ('initial', 'adjust', 'reserve', 'release', 'commit')),
        on_hand_delta integer NOT NULL,
        reserved_delta integer NOT NULL,
        reason text,
        order_id uuid,
        actor_id uuid,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX stock_movements_product_idx ON stock_movements (product_id, id)`);
    await q.query(
      `CREATE UNIQUE INDEX stock_movements_once_per_order ON stock_movements (order_id, product_id, kind)
       WHERE order_id IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE stock_movements`);
    await q.query(`DROP TABLE inventory_items`);
    await q.query(`DROP TABLE products`);
    await q.query(`DROP TABLE categories`);
  }
}
