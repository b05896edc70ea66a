import { randomUUID } from 'node:crypto';
import { queryPlan } from '../support/query-plan';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/** The plan PostgreSQL picks for `sql` when a scan of a whole table is its last resort. */
const planOf = (db: TestDatabase, sql: string, params: unknown[]) =>
  queryPlan(db, sql, params, (client) => client.query('SET LOCAL enable_seqscan = off'));

/**
 * The order detail (GET /v1/orders/{id}, cancel, fulfil) reads its payment with the payment's
 * refunds, and a refund is reserved only while none of the payment's is pending: both looked the
 * refunds up by payment, which no index served — every customer's order page read the whole
 * refunds table, growing with every refund the shop ever made (migration 1763800031000).
 */
describe('refunds by payment', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it("an order's payment with its refunds, and a payment's pending refund, are found through an index", async () => {
    const detail = await planOf(
      db,
      `SELECT p.id, r.id FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id WHERE p.order_id = $1`,
      [randomUUID()],
    );
    expect(detail).toMatch(/refunds_by_payment/);
    expect(detail).not.toMatch(/Seq Scan on refunds/);
    const pending = await planOf(
      db,
      `SELECT id FROM refunds WHERE payment_id = $1 AND status = 'pending'`,
      [randomUUID()],
    );
    expect(pending).toMatch(/refunds_by_payment|refunds_pending/);
    expect(pending).not.toMatch(/Seq Scan on refunds/);
  });
});
