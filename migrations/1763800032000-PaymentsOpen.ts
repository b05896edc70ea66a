import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Payments still open at the provider, oldest change first: the reconciliation's minutely sweep
 * for the open intents of cancelled orders (`PaymentRepository.findOpenOfCancelled`) read every
 * payment of every cancelled order ever — a shop's abandoned checkouts — to find the few still
 * open. Partial: only payments neither succeeded nor canceled, so it stays small.
 */
export class PaymentsOpen1763800032000 implements MigrationInterface {
  name = 'PaymentsOpen1763800032000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX payments_open_by_updated ON payments (updated_at) WHERE status NOT IN ('succeeded', 'canceled')`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX payments_open_by_updated`);
  }
}
