import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The reconciliation sweep's index: webhook events accepted but not processed yet, oldest first
 * (PaymentFinalizer.reconcile re-runs those whose job gave up). Partial, so it stays as small as
 * the backlog while the inbox keeps every event.
 */
export class WebhookEventsUnprocessed1763800013000 implements MigrationInterface {
  name = 'WebhookEventsUnprocessed1763800013000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX webhook_events_unprocessed_idx ON webhook_events (received_at) WHERE processed_at IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX webhook_events_unprocessed_idx`);
  }
}
