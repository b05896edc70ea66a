import type { PoolClient } from 'pg';
import { EmailDeliveryRepository } from '../../src/notifications/email-delivery.repository';
import { queryPlan } from '../support/query-plan';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * 300,000 deliveries of 30 days — receipts, confirmations, refunds and cancellations, to 20,000
 * inboxes — of which 150 were let go to unproven inboxes (100 in the last day). The decision is
 * taken under the shop-wide budget's lock, for every cancellation to an unproven inbox: its count
 * must read the budget's own rows, not the day's (or the month's) emails.
 */
async function seed(client: PoolClient): Promise<void> {
  // (the plan does not join orders: the seeded rows need none, in this file's own database)
  await client.query(`ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_order_id_fkey`);
  await client.query(
    `INSERT INTO email_deliveries (id, order_id, kind, ref, recipient, inbox, status, attempts,
                                   message_id, sent_at, unproven_at, created_at, updated_at)
     SELECT gen_random_uuid(), gen_random_uuid(), k.kind,
            CASE WHEN k.kind = 'refund' THEN gen_random_uuid()::text ELSE '' END,
            'c' || (g % 20000) || '@example.com', 'c' || (g % 20000) || '@example.com', 'sent', 1,
            '<m' || g || '>', now() - (g % 43200) * interval '1 minute',
            CASE WHEN g % 2000 = 0 THEN now() - (g % 2160) * interval '1 minute' END,
            now() - (g % 43200) * interval '1 minute', now() - (g % 43200) * interval '1 minute'
       FROM generate_series(1, 300000) g,
            LATERAL (SELECT (ARRAY['payment_receipt', 'order_confirmation', 'cancellation', 'refund'])[1 + g % 4] AS kind) k`,
  );
  await client.query('ANALYZE email_deliveries');
}

describe('the budget of cancellation emails to unproven inboxes reads its own rows (migration 1763800070000)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    // seeded once for both plans (each seeded its own 300,000 rows in its rolled-back transaction)
    const client = await db.pool.connect();
    try {
      await seed(client);
    } finally {
      client.release();
    }
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('counts the day’s stamped deliveries through email_deliveries_unproven_idx, reading no other row', async () => {
    const plan = await queryPlan(
      db,
      EmailDeliveryRepository.UNPROVEN_COUNT_SQL,
      ['00000000-0000-4000-8000-000000000000', new Date(Date.now() - 86_400_000)],
      undefined,
      'ANALYZE, BUFFERS',
    );
    expect(plan).toContain('email_deliveries_unproven_idx');
    expect(plan).not.toMatch(/Seq Scan on email_deliveries/);
    // the 150 stamped rows at most: a handful of pages, not the table's thousands
    const buffers = [...plan.matchAll(/Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/g)].map(
      (m) => Number(m[1] ?? 0) + Number(m[2] ?? 0),
    );
    expect(Math.max(...buffers)).toBeLessThan(200);
  });

  it('asks whether an inbox is proven (a receipt sent to it) through email_deliveries_inbox_sent_idx', async () => {
    const plan = await queryPlan(db, EmailDeliveryRepository.PROVEN_SQL, ['c42@example.com']);
    expect(plan).toContain('email_deliveries_inbox_sent_idx');
    expect(plan).not.toMatch(/Seq Scan on email_deliveries/);
  });
});
