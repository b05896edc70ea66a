import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A product taken off sale (a recall, a price mistake) stops payments of the orders placed before
 * from beginning — and putting it back on sale, its price mended, must not make those orders
 * payable again at the mistaken price. Which came first, the order or the product's return to
 * sale, is told by one sequence, not by clocks (an order's `created_at` is its API host's clock,
 * which may run minutes either side of the database's): `orders.placed_epoch` is drawn as the
 * order is inserted, `products.on_sale_epoch` as the product goes back on sale (NULL: it never
 * has). An order placed before the product's return was placed before it went off sale (none can
 * be placed while it is off), so it stays unpayable (PaymentsService#start). Triggers draw them,
 * whoever writes (the checkout's function, the admin routes, an operator's SQL). Orders placed
 * before this migration have none: placed before any return to sale it records.
 */
export class SaleEpochs1763800050000 implements MigrationInterface {
  name = 'SaleEpochs1763800050000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE SEQUENCE sale_epochs`);
    await q.query(`ALTER TABLE orders ADD COLUMN placed_epoch bigint`);
    await q.query(`ALTER TABLE products ADD COLUMN on_sale_epoch bigint`);
    await q.query(`
      CREATE FUNCTION orders_placed_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        NEW.placed_epoch := nextval('sale_epochs');
        RETURN NEW;
      END $$`);
    await q.query(
      `CREATE TRIGGER orders_placed_epoch BEFORE INSERT ON orders
         FOR EACH ROW EXECUTE FUNCTION orders_placed_epoch()`,
    );
    await q.query(`
      CREATE FUNCTION products_on_sale_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.active AND NOT OLD.active THEN
          NEW.on_sale_epoch := nextval('sale_epochs');
        END IF;
        RETURN NEW;
      END $$`);
    await q.query(
      `CREATE TRIGGER products_on_sale_epoch BEFORE UPDATE OF active ON products
         FOR EACH ROW EXECUTE FUNCTION products_on_sale_epoch()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER products_on_sale_epoch ON products`);
    await q.query(`DROP FUNCTION products_on_sale_epoch()`);
    await q.query(`DROP TRIGGER orders_placed_epoch ON orders`);
    await q.query(`DROP FUNCTION orders_placed_epoch()`);
    await q.query(`ALTER TABLE products DROP COLUMN on_sale_epoch`);
    await q.query(`ALTER TABLE orders DROP COLUMN placed_epoch`);
    await q.query(`DROP SEQUENCE sale_epochs`);
  }
}
