import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The Idempotency-Key a requested refund was made under (null: made by the system, or by a build
 * before this column). A key's later attempts were named `…:attempt:<n>`, which a key spelled
 * `K:attempt:2` could name too; they are now named with a separator no key holds, and the old
 * names are followed only for refunds without a key recorded — those the previous build made,
 * whose retry within the key's day must continue them, never make a second refund.
 */
export class RefundRequestKey1763800043000 implements MigrationInterface {
  name = 'RefundRequestKey1763800043000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds ADD COLUMN request_key text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds DROP COLUMN request_key`);
  }
}
