import { Logger } from '@nestjs/common';
import type { PoolClient } from 'pg';
import { createAdmin } from '../support/auth';
import { assertStockInvariants, insertProduct, stockOf } from '../support/fixtures';
import { expectProblem } from '../support/http';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * A checkout's price snapshot (which says whether a product is on sale) is read with its BEGIN,
 * without a lock; its reservation waits on the inventory row behind the other checkouts of a hot
 * product. An admin taking the product off sale meanwhile (a recall, a pricing error) was
 * answered at once, and the checkouts queued on the row then committed orders for it. Now the
 * reservation checks the product under the row lock, and the deactivation takes that lock first:
 * no order for the product commits after the deactivation has been answered.
 */
describe('taking a product off sale while checkouts of it wait on its stock row', () => {
  let t: TestApp;
  let admin: string;

  beforeAll(async () => {
    t = await bootTestApp();
    admin = (await createAdmin(t)).accessToken;
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Holds the product's inventory row (as a checkout of it being committed does) until `release`. */
  async function holdStockRow(
    productId: string,
  ): Promise<{ client: PoolClient; release(): Promise<void> }> {
    const client = await t.db.pool.connect();
    await client.query('BEGIN');
    await client.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
      productId,
    ]);
    return {
      client,
      release: async () => {
        await client.query('COMMIT');
        client.release();
      },
    };
  }

  const ordersOf = async (productId: string): Promise<number> =>
    Number(
      (await t.db.pool.query('SELECT count(*) FROM order_items WHERE product_id = $1', [productId]))
        .rows[0].count,
    );

  /**
   * A checkout of 2 units of a new product (1000 each) — its own lines, or the cart's — queued on
   * the product's stock row while `change` commits; its answer.
   */
  async function checkoutQueuedDuring(ownLines: boolean, change: string) {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 1000 });
    const [buyer] = await buyers(t.http, 1);
    if (!ownLines)
      expect(
        (await t.http.put(`/v1/cart/items/${p}`, { quantity: 2 }, { token: buyer.token })).status,
      ).toBe(200);
    const row = await holdStockRow(p);
    let checkout;
    try {
      checkout = placeOrder(t.http, buyer, ownLines ? [{ productId: p, quantity: 2 }] : undefined);
      await untilWaitingOnLocks(t.db.pool, 'the checkout queued on the stock row');
      // the change commits while the checkout waits (here behind the row's holder, which does not
      // lock the product itself), its snapshot read before
      await t.db.pool.query(change, [p]);
    } finally {
      await row.release();
    }
    return { p, res: await checkout };
  }

  it.each([
    ["the order's own lines", true],
    ['the cart', false],
  ])(
    'a checkout (%s) queued on the row when the deactivation commits is refused 409 PRODUCT_UNAVAILABLE, nothing reserved',
    async (_, ownLines) => {
      const { p, res } = await checkoutQueuedDuring(
        ownLines,
        'UPDATE products SET active = false WHERE id = $1',
      );
      expectProblem(res, 409, 'PRODUCT_UNAVAILABLE');
      expect(res.body.products).toEqual([{ productId: p }]);
      expect(await ordersOf(p)).toBe(0);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 0 });
      await assertStockInvariants(t.db.pool, [p]);
    },
  );

  it.each([
    ['DELETE', (p: string) => t.http.delete(`/v1/admin/products/${p}`, { token: admin }), 204],
    [
      'PATCH active: false',
      (p: string) => t.http.patch(`/v1/admin/products/${p}`, { active: false }, { token: admin }),
      200,
    ],
  ] as const)(
    "the admin's %s waits for a checkout already queued on the row: answered only once that order has committed",
    async (_, takeOffSale, status) => {
      const p = await insertProduct(t.db.pool, { stock: 10 });
      const [buyer, late] = await buyers(t.http, 2);
      const row = await holdStockRow(p);
      let checkout;
      let deactivation;
      try {
        checkout = placeOrder(t.http, buyer, [{ productId: p, quantity: 1 }]);
        await untilWaitingOnLocks(t.db.pool, 'the checkout queued on the stock row');
        deactivation = takeOffSale(p);
        // the old code answered the deactivation here, with the checkout still queued
        await untilWaitingOnLocks(
          t.db.pool,
          'the checkout and the deactivation queued on the row',
          { count: 2 },
        );
      } finally {
        await row.release();
      }
      expect((await deactivation).status).toBe(status);
      // when the admin is answered, the order that was queued has committed (not the reverse)
      expect(await ordersOf(p)).toBe(1);
      expect((await checkout).status).toBe(201);
      // and a checkout after it is refused
      expectProblem(
        await placeOrder(t.http, late, [{ productId: p, quantity: 1 }]),
        409,
        'PRODUCT_UNAVAILABLE',
      );
      expect(await ordersOf(p)).toBe(1);
      await assertStockInvariants(t.db.pool, [p]);
    },
  );

  it.each([
    ["the order's own lines", true],
    ['the cart', false],
  ])(
    'a checkout (%s) queued on the row when a price change commits is placed at the new price, never the old one',
    async (_, ownLines) => {
      // a price correction (1000 → 100000) made while the checkout waited with the old price in hand
      const { p, res } = await checkoutQueuedDuring(
        ownLines,
        'UPDATE products SET price_amount = 100000 WHERE id = $1',
      );
      expect(res.status).toBe(201);
      expect([res.body.items[0].unitPrice.amount, res.body.total.amount]).toEqual([100000, 200000]);
      const stored = await t.db.pool.query(
        `SELECT o.total_amount::int AS total, i.unit_price_amount::int AS unit
           FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.product_id = $1`,
        [p],
      );
      expect(stored.rows).toEqual([{ total: 200000, unit: 100000 }]);
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 2 });
      await assertStockInvariants(t.db.pool, [p]);
    },
  );

  it.each([
    ["the order's own lines", true],
    ['the cart', false],
  ])(
    'a checkout (%s) queued on the row when a rename commits names its line by the new name, never the old one',
    async (_, ownLines) => {
      const { p, res } = await checkoutQueuedDuring(
        ownLines,
        `UPDATE products SET name = 'Renamed while queued' WHERE id = $1`,
      );
      expect([res.status, res.body.items[0].name]).toEqual([201, 'Renamed while queued']);
      const stored = await t.db.pool.query(`SELECT name FROM order_items WHERE product_id = $1`, [
        p,
      ]);
      expect(stored.rows).toEqual([{ name: 'Renamed while queued' }]);
      await assertStockInvariants(t.db.pool, [p]);
    },
  );

  it("the admin's rename waits for a checkout already queued on the row: answered only once that order (with the name it read) has committed", async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    const [buyer, late] = await buyers(t.http, 2);
    const before = (await t.db.pool.query('SELECT name FROM products WHERE id = $1', [p])).rows[0]
      .name;
    const row = await holdStockRow(p);
    let checkout;
    let renaming;
    try {
      checkout = placeOrder(t.http, buyer, [{ productId: p, quantity: 1 }]);
      await untilWaitingOnLocks(t.db.pool, 'the checkout queued on the stock row');
      renaming = t.http.patch(`/v1/admin/products/${p}`, { name: 'Renamed' }, { token: admin });
      // the old code answered the rename here, with the checkout still queued
      await untilWaitingOnLocks(t.db.pool, 'the checkout and the rename queued on the row', {
        count: 2,
      });
    } finally {
      await row.release();
    }
    expect((await renaming).status).toBe(200);
    expect(await ordersOf(p)).toBe(1);
    expect((await checkout).body.items[0].name).toBe(before);
    const after = await placeOrder(t.http, late, [{ productId: p, quantity: 1 }]);
    expect([after.status, after.body.items[0].name]).toEqual([201, 'Renamed']);
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('a PATCH that leaves the name and price as they are (a whole form sent, a new description) does not wait for the stock row a sale holds', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 1000 });
    const { name, currency } = (
      await t.db.pool.query('SELECT name, currency FROM products WHERE id = $1', [p])
    ).rows[0];
    const row = await holdStockRow(p);
    try {
      const edit = t.http.patch(
        `/v1/admin/products/${p}`,
        { name, price: { amount: 1000, currency }, description: 'Now with a longer description' },
        { token: admin },
      );
      const answered = await Promise.race([
        edit.then((res) => res.status),
        new Promise((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5_000)),
      ]);
      expect(answered).toBe(200);
    } finally {
      await row.release();
    }
  });

  it("the admin's price change waits for a checkout already queued on the row: answered only once that order has committed", async () => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 1000 });
    const [buyer, late] = await buyers(t.http, 2);
    const row = await holdStockRow(p);
    let checkout;
    let repricing;
    try {
      checkout = placeOrder(t.http, buyer, [{ productId: p, quantity: 1 }]);
      await untilWaitingOnLocks(t.db.pool, 'the checkout queued on the stock row');
      const currency = (await t.db.pool.query('SELECT currency FROM products WHERE id = $1', [p]))
        .rows[0].currency;
      repricing = t.http.patch(
        `/v1/admin/products/${p}`,
        { price: { amount: 100000, currency } },
        { token: admin },
      );
      // the old code answered the change here, with the checkout still queued
      await untilWaitingOnLocks(t.db.pool, 'the checkout and the price change queued on the row', {
        count: 2,
      });
    } finally {
      await row.release();
    }
    expect((await repricing).status).toBe(200);
    // when the admin is answered, the order that was queued has committed, at the price it read
    expect(await ordersOf(p)).toBe(1);
    expect((await checkout).body.items[0].unitPrice.amount).toBe(1000);
    // and a checkout after it pays the new one
    const after = await placeOrder(t.http, late, [{ productId: p, quantity: 1 }]);
    expect([after.status, after.body.items[0].unitPrice.amount]).toEqual([201, 100000]);
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('does not deadlock with a payment of the product (units sold updated first, its stock settled in the COMMIT message)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    const retries = jest.spyOn(Logger.prototype, 'warn');
    const payment = await t.db.pool.connect();
    try {
      // a payment's transaction: the product's units sold first …
      await payment.query('BEGIN');
      await payment.query('UPDATE products SET units_sold = units_sold + 1 WHERE id = $1', [p]);
      const deactivation = t.http.delete(`/v1/admin/products/${p}`, { token: admin });
      await untilWaitingOnLocks(t.db.pool, 'the deactivation queued behind the payment');
      // … then its stock, in its COMMIT message: the deactivation must not hold that row meanwhile
      await payment.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [p]);
      await payment.query('COMMIT');
      expect((await deactivation).status).toBe(204);
      expect(
        retries.mock.calls.map((c) => String(c[0])).filter((m) => m.includes('40P01')),
      ).toEqual([]);
    } finally {
      retries.mockRestore();
      await payment.query('ROLLBACK').catch(() => undefined);
      payment.release();
    }
  });
});
