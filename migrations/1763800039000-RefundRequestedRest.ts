import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What a requested refund's caller asked for: `true` the rest of the payment (no amount given),
 * `false` an amount; null where nobody asked (automatic, or made at the provider). Refunds
 * recorded before are told apart by what remained refundable when each was made. A refund's id
 * follows from its Idempotency-Key, and the key's own record goes after 24 h: the same key sent
 * again after that without an amount ("refund the rest") answered the old partial refund as if it
 * were the rest — a 201, and the rest never refunded. Now that is told from the refund itself:
 * another request, 422.
 */
export class RefundRequestedRest1763800039000 implements MigrationInterface {
  name = 'RefundRequestedRest1763800039000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds ADD COLUMN requested_rest boolean`);
    // refunds asked for before: told apart by what remained refundable when each was made (the
    // payment's amount less the refunds before it that did not fail) — less than that, an amount
    // was asked; all of it, the rest (or an amount that came to the same)
    await q.query(
      `UPDATE refunds r
          SET requested_rest = r.amount >= p.amount - COALESCE((
                SELECT sum(e.amount) FROM refunds e
                 WHERE e.payment_id = r.payment_id AND e.status <> 'failed'
                   AND (e.created_at, e.id) < (r.created_at, r.id)), 0)
         FROM payments p
        WHERE p.id = r.payment_id AND r.reason = 'requested'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refunds DROP COLUMN requested_rest`);
  }
}
