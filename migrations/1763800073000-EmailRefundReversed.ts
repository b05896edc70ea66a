import { MigrationInterface, QueryRunner } from 'typeorm';

const KINDS = `'order_confirmation', 'payment_receipt', 'cancellation', 'refund'`;

/**
 * The email that tells a customer a refund did not reach them (`refund_reversed`, one per refund
 * like `refund`: its `ref` is the refund's id). The provider can reverse a refund it reported as
 * succeeded (the customer's bank returned it); the customer had been mailed "we have refunded …"
 * and was told nothing more.
 *
 * Both CHECKs are replaced in one statement (a moment's lock, no gap without them) NOT VALID and
 * validated apart, outside a transaction (`transaction = false`): a scan under a lock that lets
 * the workers go on writing deliveries. Only the worker's email jobs use this table (no request
 * of a customer does), so the statement's wait for its lock — the run's lock_timeout at most —
 * delays emails alone. A second run after a failure does the same. A revert deletes the reversal
 * emails' records (the constraints it puts back refuse them); their outbox events left unrelayed
 * wait for a build that knows them (the relay puts an unknown topic back).
 */
export class EmailRefundReversed1763800073000 implements MigrationInterface {
  name = 'EmailRefundReversed1763800073000';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE email_deliveries
        DROP CONSTRAINT IF EXISTS email_deliveries_kind_check,
        ADD CONSTRAINT email_deliveries_kind_check
          CHECK (kind IN (${KINDS}, 'refund_reversed')) NOT VALID,
        DROP CONSTRAINT IF EXISTS email_deliveries_refund_ref,
        ADD CONSTRAINT email_deliveries_refund_ref
          CHECK ((kind IN ('refund', 'refund_reversed')) = (ref <> '')) NOT VALID`);
    await q.query(`ALTER TABLE email_deliveries VALIDATE CONSTRAINT email_deliveries_kind_check`);
    await q.query(`ALTER TABLE email_deliveries VALIDATE CONSTRAINT email_deliveries_refund_ref`);
  }

  async down(q: QueryRunner): Promise<void> {
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(`DELETE FROM email_deliveries WHERE kind = 'refund_reversed'`);
    await q.query(`
      ALTER TABLE email_deliveries
        DROP CONSTRAINT IF EXISTS email_deliveries_kind_check,
        ADD CONSTRAINT email_deliveries_kind_check CHECK (kind IN (${KINDS})),
        DROP CONSTRAINT IF EXISTS email_deliveries_refund_ref,
        ADD CONSTRAINT email_deliveries_refund_ref CHECK ((kind = 'refund') = (ref <> ''))`);
  }
}
