import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Email deliveries: one row per email the shop means to send, written (claimed) BEFORE the
 * message goes to the mail server. UNIQUE (order_id, kind, ref) is what makes it at most one
 * email per order and kind (per refund for refunds: ref = refund id, '' otherwise). A 'sent' row
 * is final; a 'sending' row is claimed by the worker whose claimed_at is within the lease, or
 * free again (claimed_at NULL) after a failed attempt.
 */
export class Emails1763800007000 implements MigrationInterface {
  name = 'Emails1763800007000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE email_deliveries (
        id uuid PRIMARY KEY,
        order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        kind text NOT NULL
          CHECK (kind IN ('order_confirmation', 'payment_receipt', 'cancellation', 'refund')),
        ref text NOT NULL DEFAULT '',
        recipient text NOT NULL,
        status text NOT NULL CHECK (status IN ('sending', 'sent')),
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        message_id text NOT NULL,
        claimed_at timestamptz,
        sent_at timestamptz,
        last_error text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        CONSTRAINT email_deliveries_once UNIQUE (order_id, kind, ref),
        CONSTRAINT email_deliveries_sent_at CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
        CONSTRAINT email_deliveries_refund_ref CHECK ((kind = 'refund') = (ref <> ''))
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE email_deliveries`);
  }
}
