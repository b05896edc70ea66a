import { randomUUID } from 'node:crypto';
import { insertProduct } from '../support/fixtures';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * migrations/1763800057000-PlaceOrderTotals.ts: `place_order` stores no order whose total is not
 * its lines' sum, nor one whose history does not end at its status.
 */
describe('place_order: an order totals its lines, and its history ends at its status', () => {
  let db: TestDatabase;
  let userId: string;
  let productId: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    userId = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO users (email, password_hash, name) VALUES ($1, 'x', 'Totals') RETURNING id`,
        [`totals-${randomUUID()}@shop.example`],
      )
    ).rows[0].id;
    productId = await insertProduct(db.pool, { stock: 10, priceAmount: 10_000 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  const place = (total: number, to: string[]) =>
    db.pool.query(
      `SELECT place_order($1::uuid, $2::uuid, $3::text, 'INR', $4::bigint, now() + interval '15 minutes',
                          now(), ARRAY[$5]::uuid[], ARRAY['SKU-T']::text[], ARRAY['Totals']::text[],
                          ARRAY[2]::int[], ARRAY[10000]::bigint[], ARRAY[20000]::bigint[],
                          'user:test', $6::text[], $7::text[], $8::text[])`,
      [
        randomUUID(),
        userId,
        'INVENTORY_RESERVED',
        total,
        productId,
        [null, ...to.slice(0, -1)],
        to,
        to.map(() => null),
      ],
    );
  const orders = async () =>
    Number(
      (await db.pool.query(`SELECT count(*) FROM orders WHERE user_id = $1`, [userId])).rows[0]
        .count,
    );

  it('refuses a total other than its lines (23514) and a history ending elsewhere, storing nothing; places the consistent one', async () => {
    await expect(place(100, ['CREATED', 'INVENTORY_RESERVED'])).rejects.toMatchObject({
      code: '23514',
      constraint: 'orders_total_of_lines',
    });
    await expect(place(20_000, ['CREATED', 'PAID'])).rejects.toMatchObject({
      code: '23514',
      constraint: 'orders_history_of_status',
    });
    expect(await orders()).toBe(0);
    await place(20_000, ['CREATED', 'INVENTORY_RESERVED']);
    expect(await orders()).toBe(1);
  });
});
