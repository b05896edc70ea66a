import { TransactionHost } from '../../src/database/transaction-host';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * The checkout's price snapshot rides with BEGIN and the idempotency claim (OpeningReads) for a
 * plain body, and is read after validation as before for any other: same prices, same answers.
 */
describe('checkout: the price snapshot sent with BEGIN', () => {
  let t: TestApp;
  let alice: Buyer;
  let snapshotReads: string[];

  beforeAll(async () => {
    t = await bootTestApp();
    [alice] = await buyers(t.http, 1);
    const tx = t.app.get(TransactionHost);
    const query = tx.query.bind(tx);
    jest.spyOn(tx, 'query').mockImplementation((sql: string, params?: unknown[]) => {
      if (/FROM products WHERE id = ANY/.test(sql)) snapshotReads.push(sql);
      return query(sql, params);
    });
  });
  beforeEach(() => {
    snapshotReads = [];
  });
  afterAll(async () => {
    await t?.close();
  });

  it('prices a plain order from the opening read, with no round trip of its own', async () => {
    const a = await insertProduct(t.db.pool, { stock: 5, priceAmount: 1000 });
    const b = await insertProduct(t.db.pool, { stock: 5, priceAmount: 250 });
    const res = await placeOrder(t.http, alice, [
      { productId: b, quantity: 2 },
      { productId: a, quantity: 1 },
    ]);
    expect(res.status).toBe(201);
    expect(res.body.total.amount).toBe(1500);
    expect(snapshotReads).toEqual([]);
  });

  it('reads the price committed before the order, not an older one', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 1000 });
    expect(
      (await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }])).body.total.amount,
    ).toBe(1000);
    await t.db.pool.query(`UPDATE products SET price_amount = 1200 WHERE id = $1`, [p]);
    expect(
      (await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }])).body.total.amount,
    ).toBe(1200);
    expect(snapshotReads).toEqual([]);
  });

  it('reads it after validation for a body the pipe reshapes (upper-case ids name the same product)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 700 });
    const res = await placeOrder(t.http, alice, [{ productId: p.toUpperCase(), quantity: 3 }]);
    expect(res.status).toBe(201);
    expect(res.body.total.amount).toBe(2100);
    expect(res.body.items[0].productId).toBe(p);
    expect(snapshotReads).toHaveLength(1);
  });

  it('answers an unknown or inactive product as before, and writes nothing', async () => {
    const inactive = await insertProduct(t.db.pool, { stock: 5, active: false });
    const unknown = '00000000-0000-4000-8000-000000000000';
    for (const productId of [inactive, unknown]) {
      const res = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('PRODUCT_UNAVAILABLE');
    }
    expect(snapshotReads).toEqual([]);
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM order_items WHERE product_id = $1`,
      [inactive],
    );
    expect(rows[0].n).toBe(0);
  });

  it('replays a completed key without running the checkout again (the opening read is dropped)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 300 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }], key);
    await t.db.pool.query(`UPDATE products SET price_amount = 999 WHERE id = $1`, [p]);
    const again = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }], key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM order_items WHERE product_id = $1`,
      [p],
    );
    expect(rows[0].n).toBe(1);
  });
});
