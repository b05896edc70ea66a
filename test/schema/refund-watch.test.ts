import type { QueryRunner } from 'typeorm';
import { RefundWatch1763800033000 } from '../../migrations/1763800033000-RefundWatch';
import { createTestDatabase, type TestDatabase } from '../support/test-database';
import { insertRefund } from '../support/refunds';

/**
 * Payments refunded before the watch existed: those refunded in the last 30 days are watched from
 * the migration on (30 days after their last refund), older ones are not.
 */
describe('migration RefundWatch', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('watches the payments refunded in the last 30 days, until 30 days after their last refund', async () => {
    const runner = { query: (sql: string) => db.pool.query(sql) } as unknown as QueryRunner;
    await new RefundWatch1763800033000().down(runner);
    const user = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('watch@shop.test', 'n', 'customer', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
      )
    ).rows[0].id;
    /** A paid order's payment with refunds made `ages` days ago (none: never refunded). */
    const payment = async (name: string, ages: number[]) => {
      const order = (
        await db.pool.query<{ id: string }>(
          `INSERT INTO orders (id, user_id, status, currency, total_amount, created_at, updated_at)
           VALUES (gen_random_uuid(), $1, 'CONFIRMED', 'INR', 10000, now() - interval '60 days', now()) RETURNING id`,
          [user],
        )
      ).rows[0].id;
      const id = (
        await db.pool.query<{ id: string }>(
          `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, refund_reserved, created_at, updated_at)
           VALUES (gen_random_uuid(), $1, 'stripe', $2, 's', 10000, 'INR', 'succeeded', 0, now() - interval '60 days', now())
           RETURNING id`,
          [order, `pi_${name}`],
        )
      ).rows[0].id;
      for (const daysAgo of ages) {
        await insertRefund(db.pool, { orderId: order, amount: 100, status: 'succeeded', daysAgo });
      }
      return id;
    };
    const recent = await payment('recent', [40, 2]);
    const old = await payment('old', [31]);
    const never = await payment('never', []);

    await new RefundWatch1763800033000().up(runner);
    const { rows } = await db.pool.query(
      `SELECT id, round(extract(epoch FROM refunds_watched_until - now()) / 86400) AS days_left, refunds_checked_at
         FROM payments WHERE id = ANY($1::uuid[])`,
      [[recent, old, never]],
    );
    const byId = Object.fromEntries(
      rows.map((r) => [
        r.id,
        [r.days_left === null ? null : Number(r.days_left), r.refunds_checked_at],
      ]),
    );
    expect(byId).toEqual({ [recent]: [28, null], [old]: [null, null], [never]: [null, null] });
  });
});
