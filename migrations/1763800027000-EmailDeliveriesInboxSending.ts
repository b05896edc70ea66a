import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The daily allowance of cancellation emails counts, besides those sent, the inbox's deliveries
 * claimed or tried in the window and not yet settled (another worker's send in flight, a retry
 * after a long mail-server outage): this partial index finds them (only in-flight rows, so it
 * stays small).
 */
export class EmailDeliveriesInboxSending1763800027000 implements MigrationInterface {
  name = 'EmailDeliveriesInboxSending1763800027000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX email_deliveries_inbox_sending_idx ON email_deliveries (inbox, kind, updated_at) WHERE status = 'sending'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX email_deliveries_inbox_sending_idx`);
  }
}
