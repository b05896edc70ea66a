import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When the provider was asked for the report a dispute's recorded status comes from
 * (`status_read_at`, on the database's clock): a report read earlier than it never replaces it.
 * Two reads of one dispute at once — two of its events handled together, a run whose job lock
 * lapsed beside its rerun — committed in either order, and the older moved the dispute back (under
 * review → needs a response: a false "answer it or lose it"; a chargeback → an inquiry: the
 * escalation hidden until the next recheck). Ordered by the reads, not by the statuses: the
 * provider may ask for evidence again (under review → needs a response), which must be recorded.
 *
 * Null for the disputes recorded before (any report replaces their status, as it did). Added
 * without a default: no rewrite, a moment's lock. A revert drops it.
 */
export class DisputeStatusReadAt1763800072000 implements MigrationInterface {
  name = 'DisputeStatusReadAt1763800072000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE payment_disputes ADD COLUMN IF NOT EXISTS status_read_at timestamptz`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE payment_disputes DROP COLUMN IF EXISTS status_read_at`);
  }
}
