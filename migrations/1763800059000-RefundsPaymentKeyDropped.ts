import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A refund's single-column key to its payment, implied by `refunds_of_their_payment` (payment,
 * order, currency: 1763800058000). Dropping it drops its triggers on `payments`, which takes an
 * ACCESS EXCLUSIVE lock there — reads wait too — so it is a migration of its own: the lock is
 * held for the drop and its COMMIT, not for the index build and the validation before it (diff
 * review: a read of payments waited 3.5 s when it was part of 1763800058000).
 */
export class RefundsPaymentKeyDropped1763800059000 implements MigrationInterface {
  name = 'RefundsPaymentKeyDropped1763800059000';

  async up(q: QueryRunner): Promise<void> {
    // IF EXISTS: 1763800058000 as it was at 5590335 dropped it itself, and a database migrated
    // then failed here ("does not exist"). (Edited after it was applied: only to succeed where it
    // failed — checksums.sha256.)
    await q.query(`ALTER TABLE refunds DROP CONSTRAINT IF EXISTS refunds_payment_id_fkey`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE refunds ADD CONSTRAINT refunds_payment_id_fkey FOREIGN KEY (payment_id) REFERENCES payments (id)`,
    );
  }
}
