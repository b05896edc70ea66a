import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An email the mail server refused for good (a 5xx for the recipient or the message) is
 * recorded as 'rejected': final, neither retried nor owed again by the reconciliation.
 */
export class EmailRejected1763800017000 implements MigrationInterface {
  name = 'EmailRejected1763800017000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check`);
    await q.query(
      `ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_status_check CHECK (status IN ('sending', 'sent', 'rejected'))`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`UPDATE email_deliveries SET status = 'sending' WHERE status = 'rejected'`);
    await q.query(`ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check`);
    await q.query(
      `ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_status_check CHECK (status IN ('sending', 'sent'))`,
    );
  }
}
