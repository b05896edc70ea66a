import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What processing a webhook event did (`outcome`: PaymentFinalizer's EventOutcome kind — `confirmed`,
 * `no-payment`, `orphan`, …), so an operator finds in `webhook_events` the events about one of our
 * intents whose order the database does not have (`orphan`: money taken or disputed for an order
 * a restore from a backup lost), apart from those about another integration's intents
 * (`no-payment`). NULL for events processed before this column, and for those not processed yet.
 * A nullable column without a default: no rewrite, a brief ACCESS EXCLUSIVE lock only.
 */
export class WebhookEventOutcome1763800062000 implements MigrationInterface {
  name = 'WebhookEventOutcome1763800062000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE webhook_events ADD COLUMN outcome text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE webhook_events DROP COLUMN outcome`);
  }
}
