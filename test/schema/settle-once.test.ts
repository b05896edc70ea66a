import { randomUUID } from 'node:crypto';
import { insertProduct, stockOf } from '../support/fixtures';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * `settle_stock` (migrations/1763800056000-SettleOnceAsReserved.ts): an order's reservation is
 * settled once, as it was reserved — by the database itself, whatever code path calls it.
 */
describe('an order settles its reservation once, as reserved', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** `units` of a product (a new one: 10 on hand) reserved by a new order id, as reserve_stock records it. */
  const reserved = async (units: number, product?: string) => {
    const productId = product ?? (await insertProduct(db.pool, { stock: 10 }));
    const orderId = randomUUID();
    await db.pool.query(
      `WITH r AS (UPDATE inventory_items SET reserved = reserved + $3 WHERE product_id = $1)
       INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
       VALUES ($1, 'reserve', 0, $3, 'order', $2, now())`,
      [productId, orderId, units],
    );
    return { productId, orderId };
  };
  const settle = (kind: string, orderId: string, productId: string, units: number) =>
    db.pool.query(`SELECT settle_stock($1, $2::uuid, ARRAY[$3]::uuid[], ARRAY[$4]::int[], now())`, [
      kind,
      orderId,
      productId,
      units,
    ]);

  it("a released order's units are never committed after (they were another order's to hold), nor a committed order's released", async () => {
    // A reserved 2 and was cancelled; B holds 3 of the same product
    const a = await reserved(2);
    await settle('release', a.orderId, a.productId, 2);
    const b = await reserved(3, a.productId);
    await expect(settle('commit', a.orderId, a.productId, 2)).rejects.toMatchObject({
      code: '23505',
      constraint: 'stock_movements_settled_once',
    });
    // (it took 2 of B's 3 off `reserved`, and the ledger still summed to the counters)
    expect(await stockOf(db.pool, a.productId)).toEqual({ onHand: 10, reserved: 3 });
    // B paid; C holds 3: B's units are not released after their sale
    await settle('commit', b.orderId, b.productId, 3);
    await reserved(3, a.productId);
    await expect(settle('release', b.orderId, b.productId, 3)).rejects.toMatchObject({
      code: '23505',
      constraint: 'stock_movements_settled_once',
    });
    expect(await stockOf(db.pool, b.productId)).toEqual({ onHand: 7, reserved: 3 });
  });

  it('refuses units the order did not reserve: another quantity, another product (23514), changing nothing', async () => {
    const a = await reserved(2);
    const other = await insertProduct(db.pool, { stock: 10 });
    for (const [productId, units] of [
      [a.productId, 3],
      [a.productId, 1],
      [other, 2],
    ] as const) {
      await expect(settle('commit', a.orderId, productId, units)).rejects.toMatchObject({
        code: '23514',
      });
    }
    expect(await stockOf(db.pool, a.productId)).toEqual({ onHand: 10, reserved: 2 });
    expect(await stockOf(db.pool, other)).toEqual({ onHand: 10, reserved: 0 });
    await settle('commit', a.orderId, a.productId, 2);
    expect(await stockOf(db.pool, a.productId)).toEqual({ onHand: 8, reserved: 0 });
  });
});
