import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A cancellation email over the per-recipient daily allowance is recorded as 'suppressed': final,
 * neither sent, retried nor owed again by the reconciliation. Registration needs no proof of the
 * address, so a script could otherwise register someone else's address and order and cancel in a
 * loop, and have the shop mail that inbox thousands of times a day. The index finds the
 * recipient's cancellation emails of the last day.
 */
export class EmailSuppressed1763800021000 implements MigrationInterface {
  name = 'EmailSuppressed1763800021000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check`);
    await q.query(
      `ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_status_check CHECK (status IN ('sending', 'sent', 'rejected', 'suppressed'))`,
    );
    await q.query(
      `CREATE INDEX email_deliveries_recipient_sent_idx ON email_deliveries (recipient, kind, sent_at) WHERE status = 'sent'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX email_deliveries_recipient_sent_idx`);
    await q.query(`UPDATE email_deliveries SET status = 'rejected' WHERE status = 'suppressed'`);
    await q.query(`ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check`);
    await q.query(
      `ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_status_check CHECK (status IN ('sending', 'sent', 'rejected'))`,
    );
  }
}
