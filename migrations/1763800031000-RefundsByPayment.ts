import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A payment's refunds by payment: the order detail (GET /v1/orders/{id}, cancel, fulfil) sums
 * them with its payment (`PaymentReader.summaryOf`), and a refund is reserved only while none of
 * the payment's is pending (`RefundRepository.findPending`) — both read the whole refunds table
 * without it (`refunds_one_automatic_per_payment` is partial: it serves neither).
 */
export class RefundsByPayment1763800031000 implements MigrationInterface {
  name = 'RefundsByPayment1763800031000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX refunds_by_payment ON refunds (payment_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX refunds_by_payment`);
  }
}
