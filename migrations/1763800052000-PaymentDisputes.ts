import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Disputes (chargebacks, and the inquiries before them) of a payment, as the provider's
 * `charge.dispute.*` events report them: the customer's bank takes the money back (or may), so
 * the order must not be fulfilled while one is open or lost (`OrderRepository#transition`). One row
 * per provider dispute; a final status (won, lost, prevented, an inquiry closed) is never overwritten by an
 * event that arrives late (`DisputeRepository#record`). `checked_at`: when the provider last told
 * us (an event, or the reconciliation's read of a dispute still open: events can be lost).
 */
export class PaymentDisputes1763800052000 implements MigrationInterface {
  name = 'PaymentDisputes1763800052000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE payment_disputes (
        id text NOT NULL,
        payment_id uuid NOT NULL,
        status text NOT NULL,
        amount bigint NOT NULL,
        currency char(3) NOT NULL,
        reason text,
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        checked_at timestamptz NOT NULL,
        CONSTRAINT payment_disputes_pkey PRIMARY KEY (id),
        CONSTRAINT payment_disputes_payment_id_fkey FOREIGN KEY (payment_id) REFERENCES payments (id),
        CONSTRAINT payment_disputes_amount_check CHECK (amount >= 0),
        CONSTRAINT payment_disputes_status_check CHECK (status <> '')
      )`);
    await q.query(`CREATE INDEX payment_disputes_by_payment ON payment_disputes (payment_id)`);
    // the disputes not final yet, least recently read from the provider first (the recheck)
    await q.query(
      `CREATE INDEX payment_disputes_to_recheck ON payment_disputes (checked_at)
         WHERE status NOT IN ('won', 'lost', 'warning_closed', 'prevented')`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE payment_disputes`);
  }
}
