import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The unprocessed-event sweep's order: `swept_at` is when the sweep last tried an event and it
 * failed again, and the sweep takes events by `COALESCE(swept_at, received_at)`, so an event that
 * keeps failing goes to the back of the line instead of holding the batch's front for ever (the
 * newer events behind it would never be reached). The partial index follows that order.
 */
export class WebhookEventsSweepOrder1763800018000 implements MigrationInterface {
  name = 'WebhookEventsSweepOrder1763800018000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE webhook_events ADD COLUMN swept_at timestamptz`);
    await q.query(`DROP INDEX webhook_events_unprocessed_idx`);
    await q.query(
      `CREATE INDEX webhook_events_unprocessed_idx ON webhook_events ((COALESCE(swept_at, received_at))) WHERE processed_at IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX webhook_events_unprocessed_idx`);
    await q.query(
      `CREATE INDEX webhook_events_unprocessed_idx ON webhook_events (received_at) WHERE processed_at IS NULL`,
    );
    await q.query(`ALTER TABLE webhook_events DROP COLUMN swept_at`);
  }
}
