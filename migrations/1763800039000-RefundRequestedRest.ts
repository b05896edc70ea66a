import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What a requested refund's caller asked for: `true` the rest of the payment (no amount given),
 * `false` an amount; null where nobody asked (automatic, or made at the provider) and for refunds
 * recorded before this column. A refund's id follows from its Idempotency-Key, and the key's own
 * record goes after 24 h: the same key sent again after that without an amount ("refund the
 * rest") answered the old partial refund as if it were the rest — a 201, and the rest never
 * refunded. Now that is told from the refund itself: another request, 422.
 */
export class RefundRequestedRest1763800039000 implements MigrationInterface {
  name = 'RefundRequestedRest1763800039000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds ADD COLUMN requested_rest boolean`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds DROP COLUMN requested_rest`);
  }
}
