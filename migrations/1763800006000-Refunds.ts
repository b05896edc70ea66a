import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Refunds. `payments.refund_reserved` counts every refund that is pending or succeeded; a CHECK
 * keeps it within the captured amount, and the guarded UPDATE that reserves it takes the payment
 * row's lock, so concurrent refunds can never exceed what was captured. One automatic refund per
 * payment (a success that arrived after the order was cancelled). The simulated gateway keeps its
 * own refunds, as Stripe would.
 */
export class Refunds1763800006000 implements MigrationInterface {
  name = 'Refunds1763800006000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE payments
        ADD COLUMN refund_reserved bigint NOT NULL DEFAULT 0,
        ADD CONSTRAINT payments_refund_reserved_non_negative CHECK (refund_reserved >= 0),
        ADD CONSTRAINT payments_refunds_within_amount CHECK (refund_reserved <= amount)`);
    await q.query(`
      CREATE TABLE refunds (
        id uuid PRIMARY KEY,
        order_id uuid NOT NULL REFERENCES orders (id),
        payment_id uuid NOT NULL REFERENCES payments (id),
        amount bigint NOT NULL CHECK (amount > 0),
        currency char(3) NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        reason text NOT NULL CHECK (reason IN ('requested', 'paid_after_cancel', 'external')),
        provider_refund_id text,
        failure text,
        actor text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX refunds_provider_id ON refunds (provider_refund_id)`);
    await q.query(`CREATE INDEX refunds_by_order ON refunds (order_id)`);
    await q.query(`CREATE INDEX refunds_pending ON refunds (updated_at) WHERE status = 'pending'`);
    await q.query(
      `CREATE UNIQUE INDEX refunds_one_automatic_per_payment ON refunds (payment_id) WHERE reason = 'paid_after_cancel'`,
    );
    await q.query(`
      CREATE TABLE simulated_refunds (
        id text PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        intent_id text NOT NULL REFERENCES simulated_payment_intents (id),
        amount bigint NOT NULL CHECK (amount > 0),
        status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
        metadata jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE simulated_refunds`);
    await q.query(`DROP TABLE refunds`);
    await q.query(`
      ALTER TABLE payments
        DROP CONSTRAINT payments_refunds_within_amount,
        DROP CONSTRAINT payments_refund_reserved_non_negative,
        DROP COLUMN refund_reserved`);
  }
}
