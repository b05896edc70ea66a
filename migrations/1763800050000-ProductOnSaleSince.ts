import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When a product last went back on sale (`products.on_sale_since`, on the database's clock; NULL
 * while it has never been off sale). A product taken off sale (a recall, a price mistake) stops
 * payments of the orders placed before from beginning — and putting it back on sale, its price
 * mended, must not make those orders payable again at the mistaken price. An order placed before
 * `on_sale_since` was placed before the product went off sale (none can be placed while it is
 * off), so it stays unpayable (PaymentsService#start). A trigger stamps it, whoever writes
 * `active` (the admin routes, an operator's SQL).
 */
export class ProductOnSaleSince1763800050000 implements MigrationInterface {
  name = 'ProductOnSaleSince1763800050000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE products ADD COLUMN on_sale_since timestamptz`);
    await q.query(`
      CREATE FUNCTION products_on_sale_since() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.active AND NOT OLD.active THEN
          NEW.on_sale_since := statement_timestamp();
        END IF;
        RETURN NEW;
      END $$`);
    await q.query(
      `CREATE TRIGGER products_on_sale_since BEFORE UPDATE OF active ON products
         FOR EACH ROW EXECUTE FUNCTION products_on_sale_since()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER products_on_sale_since ON products`);
    await q.query(`DROP FUNCTION products_on_sale_since()`);
    await q.query(`ALTER TABLE products DROP COLUMN on_sale_since`);
  }
}
