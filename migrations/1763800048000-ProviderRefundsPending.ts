import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What refunds made at the provider (the Stripe dashboard, another integration) and still pending
 * there would return of a payment, as of its last sync (RefundsService#syncFromGateway). Such a
 * refund is recorded only once it succeeds, so fulfilment, which holds an order whose pending
 * refunds would return its whole total, counted only ours: a full dashboard refund the bank had not
 * settled let the order be fulfilled, and its settling days later moved it FULFILLED → REFUNDED —
 * the goods gone and the money returned.
 */
export class ProviderRefundsPending1763800048000 implements MigrationInterface {
  name = 'ProviderRefundsPending1763800048000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE payments ADD COLUMN provider_refunds_pending bigint NOT NULL DEFAULT 0,
         ADD CONSTRAINT payments_provider_refunds_pending_non_negative CHECK (provider_refunds_pending >= 0)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE payments DROP COLUMN provider_refunds_pending`);
  }
}
