import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When the provider's refund list behind `payments.provider_refunds_pending` was read: a sync
 * writes its figure only over one read before its own list (PaymentRepository#noteProviderPending).
 * Two syncs of one payment at once (a refund event's job and the 6-hourly recheck) wrote in the
 * order they finished: the one that listed before a dashboard refund could write 0 over the other's
 * figure, and fulfilment was no longer held until the next recheck.
 */
export class ProviderRefundsListedAt1763800049000 implements MigrationInterface {
  name = 'ProviderRefundsListedAt1763800049000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE payments ADD COLUMN provider_refunds_listed_at timestamptz`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE payments DROP COLUMN provider_refunds_listed_at`);
  }
}
