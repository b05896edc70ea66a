import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When a customer's try to start an order's payment failed on the shop's side (the payment
 * provider unreachable, or refusing for a reason that is not the order's). Orders that expired or
 * were cancelled during a provider outage, never given a payment, counted as abandoned: a
 * customer who kept trying through an hour's outage reached the daily limit and was refused
 * every order for a day after the provider was back. The purchase limits now leave them out.
 */
export class PaymentStartFailed1763800045000 implements MigrationInterface {
  name = 'PaymentStartFailed1763800045000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE orders ADD COLUMN payment_start_failed_at timestamptz`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE orders DROP COLUMN payment_start_failed_at`);
  }
}
