import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The shop-wide daily budget of cancellation emails to inboxes nobody has proven
 * (CANCELLATION_EMAILS_UNPROVEN_PER_DAY; an inbox is proven once a payment receipt was sent to
 * it). A cancellation email let go to such an inbox is stamped `unproven_at` (when it was let go,
 * under the budget's lock), and the budget counts the stamped deliveries of the last 24 h: a
 * partial index of the stamped rows alone, so the count reads only the budget's own emails (at
 * most the budget and those in flight), not the day's cancellations, receipts or anything older.
 *
 * The column is added without a default (no rewrite, a moment's lock); the index is built
 * CONCURRENTLY, outside a transaction (`transaction = false`): every email writes this table. A
 * second run after a failure does the same (the column IF NOT EXISTS, an INVALID index a failed
 * build left dropped first).
 */
export class EmailUnprovenBudget1763800070000 implements MigrationInterface {
  name = 'EmailUnprovenBudget1763800070000';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE email_deliveries ADD COLUMN IF NOT EXISTS unproven_at timestamptz`);
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS email_deliveries_unproven_idx`);
    await q.query(`
      CREATE INDEX CONCURRENTLY email_deliveries_unproven_idx
        ON email_deliveries (unproven_at) WHERE unproven_at IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(`DROP INDEX IF EXISTS email_deliveries_unproven_idx`);
    await q.query(`ALTER TABLE email_deliveries DROP COLUMN IF EXISTS unproven_at`);
  }
}
