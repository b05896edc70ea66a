import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Payments: one payment (intent) per order, the verified webhook inbox keyed by the provider's
 * event id, and the simulated gateway's own intents (it stands in for Stripe in development).
 */
export class Payments1763800005000 implements MigrationInterface {
  name = 'Payments1763800005000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE payments (
        id uuid PRIMARY KEY,
        order_id uuid NOT NULL REFERENCES orders (id),
        provider text NOT NULL CHECK (provider IN ('stripe', 'simulated')),
        intent_id text NOT NULL,
        client_secret text NOT NULL,
        amount bigint NOT NULL CHECK (amount >= 0),
        currency char(3) NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX payments_one_per_order ON payments (order_id)`);
    await q.query(`CREATE UNIQUE INDEX payments_intent_key ON payments (intent_id)`);
    await q.query(`
      CREATE TABLE webhook_events (
        id text PRIMARY KEY,
        type text NOT NULL,
        intent_id text,
        payload jsonb NOT NULL,
        received_at timestamptz NOT NULL,
        processed_at timestamptz
      )`);
    await q.query(`
      CREATE TABLE simulated_payment_intents (
        id text PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        order_id uuid NOT NULL,
        amount bigint NOT NULL,
        currency char(3) NOT NULL,
        status text NOT NULL CHECK (status IN ('requires_payment_method', 'succeeded', 'canceled')),
        last_error text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE simulated_payment_intents`);
    await q.query(`DROP TABLE webhook_events`);
    await q.query(`DROP TABLE payments`);
  }
}
