import { assertStockInvariants, insertProduct, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

describe('checkout under concurrency', () => {
  let t: TestApp;
  let crowd: Buyer[];

  beforeAll(async () => {
    t = await bootTestApp();
    crowd = await buyers(t.http, 200);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  it('flash sale: 200 concurrent buyers of a 50-unit item → exactly 50 orders, no oversell', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 50 });

    const responses = await Promise.all(
      crowd.map((b) => placeOrder(t.http, b, [{ productId, quantity: 1 }])),
    );

    const created = responses.filter((r) => r.status === 201);
    const refused = responses.filter((r) => r.status === 409);
    expect(created).toHaveLength(50);
    expect(refused).toHaveLength(150);
    for (const r of refused) {
      expect(r.body.code).toBe('INSUFFICIENT_STOCK');
      expect(r.body.products).toEqual([{ productId, requested: 1, available: 0 }]);
    }
    for (const r of created) expect(r.body.status).toBe('INVENTORY_RESERVED');

    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 50, reserved: 50 });
    const orders = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM order_items WHERE product_id = $1`,
      [productId],
    );
    expect(orders.rows[0].n).toBe(50);
    await assertStockInvariants(t.db.pool, [productId]);

    // business counters count committed orders only: the 150 rolled-back attempts do not appear
    expect(await t.metrics()).toMatch(/^orders_created_total 50$/m);
  }, 120_000);

  it('random multi-item orders from many clients: no 500s, no deadlocks, invariants hold', async () => {
    const products = await Promise.all(
      Array.from({ length: 5 }, () => insertProduct(t.db.pool, { stock: 40 })),
    );
    // Deterministic pseudo-random baskets: 1–4 distinct products, quantities 1–3, in
    // shuffled order so that naive lock ordering would deadlock.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const baskets = crowd.slice(0, 150).map(() => {
      const shuffled = [...products].sort(() => rand(3) - 1);
      return shuffled
        .slice(0, 1 + rand(4))
        .map((productId) => ({ productId, quantity: 1 + rand(3) }));
    });

    const responses = await Promise.all(
      baskets.map((items, i) => placeOrder(t.http, crowd[i], items)),
    );

    const statuses = responses.map((r) => r.status);
    expect(
      responses
        .filter((r) => r.status >= 500)
        .map((r) => `${r.status} ${r.body?.code} ${r.body?.detail}`),
    ).toEqual([]);
    expect(statuses.every((s) => s === 201 || s === 409)).toBe(true);
    for (const r of responses.filter((x) => x.status === 409)) {
      expect(r.body.code).toBe('INSUFFICIENT_STOCK');
    }
    expect(statuses.filter((s) => s === 201).length).toBeGreaterThan(10);
    await assertStockInvariants(t.db.pool, products);

    // Every accepted order's lines are exactly what was reserved.
    const reservedByOrders = await t.db.pool.query(
      `SELECT count(DISTINCT order_id)::int AS n FROM stock_movements
        WHERE kind = 'reserve' AND product_id = ANY($1::uuid[])`,
      [products],
    );
    expect(reservedByOrders.rows[0].n).toBe(statuses.filter((s) => s === 201).length);
  }, 120_000);
});
