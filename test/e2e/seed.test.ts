import { randomUUID } from 'node:crypto';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../../src/auth/demo-credentials';
import { EXIT_NOT_SEEDED } from '../../src/config/exit-codes';
import { DatabaseInUse, DemoSeeder } from '../../src/seed/demo.seeder';
import { login } from '../support/auth';
import { insertProduct } from '../support/fixtures';
import { placeOrder } from '../support/orders';
import { bootTestApp, TestApp } from '../support/test-app';

/**
 * The demo seed writes only into a database holding nothing but its own data (operator-mistakes
 * review): NODE_ENV=development and a local database were its only guards, and `npm start` makes
 * an unset NODE_ENV development — on a one-box shop whose database is on localhost it added demo
 * accounts, two categories and twenty products with stock to the live catalog.
 */
describe('the demo seed', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** What the seed writes or would restore, in one comparable value. */
  const state = async () =>
    (
      await t.db.pool.query(
        `SELECT (SELECT json_agg(json_build_object('email', email, 'role', role, 'hash', password_hash) ORDER BY email) FROM users) AS users,
                (SELECT count(*) FROM products)::int AS products,
                (SELECT count(*) FROM categories)::int AS categories,
                (SELECT sum(on_hand)::int FROM inventory_items) AS stock`,
      )
    ).rows[0] as unknown;

  it("loads into an empty database and again over its own data; refuses, writing nothing, a database holding an account, product or category it did not create, or another account's order; the demo customer's orders are its own", async () => {
    const seeder = t.app.get(DemoSeeder);
    await seeder.run();
    await seeder.run(); // idempotent: its own data is no refusal
    const seeded = (await t.db.pool.query(`SELECT count(*)::int AS n FROM products`)).rows[0].n;
    expect(seeded).toBe(20);
    // the seed would promote its admin back: a refusal leaves the account as it is
    await t.db.pool.query(`UPDATE users SET role = 'customer' WHERE email = $1`, [
      DEMO_ADMIN.email,
    ]);
    const refusal = async (expected: string) => {
      const before = await state();
      const refused = seeder.run();
      await expect(refused).rejects.toBeInstanceOf(DatabaseInUse);
      await expect(refused).rejects.toMatchObject({
        exitCode: EXIT_NOT_SEEDED,
        message: expect.stringContaining(`holds data the seed did not create (${expected})`),
      });
      expect(await state()).toEqual(before);
    };

    // an account of its own (a shop's admin), a product, a category: each, then removed again
    await t.db.pool.query(
      `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('owner@shop.test', 'Owner', 'admin', 'x', 'epoch-of-a-test-user-1')`,
    );
    await refusal('1 account');
    await t.db.pool.query(`DELETE FROM users WHERE email = 'owner@shop.test'`);
    const product = await insertProduct(t.db.pool, { stock: 5, sku: `REAL-${randomUUID()}` });
    await refusal('1 product');
    for (const table of ['stock_movements', 'inventory_items']) {
      await t.db.pool.query(`DELETE FROM ${table} WHERE product_id = $1`, [product]);
    }
    await t.db.pool.query(`DELETE FROM products WHERE id = $1`, [product]);
    await t.db.pool.query(
      `INSERT INTO categories (id, name, slug) VALUES ($1, 'Stationery', 'stationery')`,
      [randomUUID()],
    );
    await refusal('1 category');
    await t.db.pool.query(`DELETE FROM categories WHERE slug = 'stationery'`);
    // (and only its own data again: it runs)
    await seeder.run();
    expect(
      (await t.db.pool.query(`SELECT role FROM users WHERE email = $1`, [DEMO_ADMIN.email])).rows[0]
        .role,
    ).toBe('admin');

    // the demo customer's order of a demo product (a developer trying the shop): no refusal, and
    // the demo admin is repaired again
    const customer = await login(t.http, DEMO_CUSTOMER.email, DEMO_CUSTOMER.password);
    const [{ id: productId }] = (
      await t.db.pool.query(`SELECT id FROM products WHERE sku = 'SNK-TRAIL'`)
    ).rows;
    const order = await placeOrder(
      t.http,
      { userId: customer.user.id, token: customer.accessToken },
      [{ productId, quantity: 1 }],
    );
    expect(order.status).toBe(201);
    await t.db.pool.query(`UPDATE users SET role = 'customer' WHERE email = $1`, [
      DEMO_ADMIN.email,
    ]);
    await seeder.run();
    expect(
      (await t.db.pool.query(`SELECT role FROM users WHERE email = $1`, [DEMO_ADMIN.email])).rows[0]
        .role,
    ).toBe('admin');
    // an order of another account: that account refuses it already, and its order is named
    const owner = await t.db.pool.query<{ id: string }>(
      `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('buyer@shop.test', 'Buyer', 'customer', 'x', 'epoch-of-a-test-user-2') RETURNING id`,
    );
    await t.db.pool.query(`UPDATE orders SET user_id = $1 WHERE id = $2`, [
      owner.rows[0].id,
      order.body.id,
    ]);
    await refusal('1 order, 1 account');
  });
});
