import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Payments whose refunds may still change at the provider: a refund reported succeeded can be
 * failed days later (the customer's bank returned it), one made in the provider's dashboard can
 * start pending — and the provider's events for those changes may never come (an endpoint not
 * subscribed to them, an outage). `refunds_watched_until`: until when the reconciliation asks the
 * provider about the payment's refunds; `refunds_checked_at`: when it (or any sync) last did.
 * Payments refunded in the last 30 days are watched from now on.
 */
export class RefundWatch1763800033000 implements MigrationInterface {
  name = 'RefundWatch1763800033000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE payments ADD COLUMN refunds_watched_until timestamptz, ADD COLUMN refunds_checked_at timestamptz`,
    );
    await q.query(
      `CREATE INDEX payments_refunds_watched ON payments (refunds_watched_until) WHERE refunds_watched_until IS NOT NULL`,
    );
    await q.query(
      `UPDATE payments p SET refunds_watched_until = r.last + interval '30 days'
         FROM (SELECT payment_id, max(created_at) AS last FROM refunds GROUP BY payment_id) r
        WHERE r.payment_id = p.id AND r.last > now() - interval '30 days'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX payments_refunds_watched`);
    await q.query(
      `ALTER TABLE payments DROP COLUMN refunds_checked_at, DROP COLUMN refunds_watched_until`,
    );
  }
}
