import type { QueryRunner } from 'typeorm';
import { RefundRequestedRest1763800039000 } from '../../migrations/1763800039000-RefundRequestedRest';
import { createTestDatabase, type TestDatabase } from '../support/test-database';
import { insertRefund, type RefundRow } from '../support/refunds';

/**
 * Refunds asked for before requested_rest existed are told apart by what remained refundable when
 * each was made: a partial one is an amount (its key sent again for "the rest" is then a 422),
 * one that took all that remained is the rest.
 */
describe('migration RefundRequestedRest', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('marks the earlier requested refunds: partial → an amount, the whole remainder → the rest; automatic ones stay unmarked', async () => {
    const runner = { query: (sql: string) => db.pool.query(sql) } as unknown as QueryRunner;
    await new RefundRequestedRest1763800039000().down(runner);
    const user = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('rest@shop.test', 'n', 'customer', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
      )
    ).rows[0].id;
    const order = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO orders (id, user_id, status, currency, total_amount, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, 'REFUNDED', 'INR', 10000, now() - interval '9 days', now()) RETURNING id`,
        [user],
      )
    ).rows[0].id;
    const payment = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, refund_reserved, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, 'stripe', 'pi_rest', 's', 10000, 'INR', 'succeeded', 0, now() - interval '9 days', now()) RETURNING id`,
        [order],
      )
    ).rows[0].id;
    const refund = (
      amount: number,
      status: RefundRow['status'],
      reason: RefundRow['reason'],
      daysAgo: number,
    ) => insertRefund(db.pool, { orderId: order, amount, status, reason, daysAgo });
    const partial = await refund(3000, 'succeeded', 'requested', 5);
    const failed = await refund(7000, 'failed', 'requested', 4); // the rest, refused: gave its share back
    const rest = await refund(7000, 'succeeded', 'requested', 3);
    // (made at the provider, and refused there: a payment refunded in full has nothing left)
    const automatic = await refund(1, 'failed', 'external', 2);

    await new RefundRequestedRest1763800039000().up(runner);
    const { rows } = await db.pool.query<{ id: string; requested_rest: boolean | null }>(
      `SELECT id, requested_rest FROM refunds WHERE payment_id = $1`,
      [payment],
    );
    const marked = Object.fromEntries(rows.map((r) => [r.id, r.requested_rest]));
    expect([marked[partial], marked[failed], marked[rest], marked[automatic]]).toEqual([
      false,
      true,
      true,
      null,
    ]);
  });
});
