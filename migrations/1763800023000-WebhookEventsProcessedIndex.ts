import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The hourly purge of payment provider events processed more than 30 days ago
 * (WebhookEventRetention) finds them by `processed_at`, without reading the table whole.
 */
export class WebhookEventsProcessedIndex1763800023000 implements MigrationInterface {
  name = 'WebhookEventsProcessedIndex1763800023000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX webhook_events_processed_idx ON webhook_events (processed_at) WHERE processed_at IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX webhook_events_processed_idx`);
  }
}
