import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A refund belongs to its payment — by the database, not only by the code that records it
 * (RefundRepository; constraints review, F4):
 *
 * - `refunds_of_their_payment`: a refund's (payment, order, currency) is its payment's. The two
 *   separate foreign keys let a refund name one order and another order's payment, or another
 *   currency: the order's page and emails would show money that was never taken from it.
 * - `payments_refund_reserved_of_refunds`: a payment's `refund_reserved` is the sum of its pending
 *   and succeeded refunds, checked at COMMIT (a constraint trigger, deferred: the code raises the
 *   counter and inserts the refund in two statements of one transaction). The counter is what
 *   bounds refunds to the captured amount (its CHECK); a code path that changed a refund's status
 *   and forgot the counter left it wrong, and nothing said so. 23514, as a CHECK would.
 *
 * Refunds are rare (an admin's, or one per payment that succeeded after its order was cancelled):
 * the check reads one payment and its refunds by `refunds_by_payment`. It fires on payments only
 * when `refund_reserved` changes, never on a checkout's or a webhook's other writes.
 *
 * Locks, for a deploy under traffic: the key is a unique index (a foreign key may name one), not a
 * constraint — `ADD CONSTRAINT … UNIQUE` holds ACCESS EXCLUSIVE on `payments` (its reads wait too)
 * for as long as the index takes to build and the migration to commit (rolling-deploy review:
 * 2.1 s at 1M payments); the index's build holds a SHARE lock (writes wait, reads do not). The
 * old single-column key is dropped in 1763800059000, on its own for the same reason.
 * A payment whose counter a past bug left apart from its refunds is set to their sum first (the
 * refund rows are the record; the CHECK still bounds it by the amount): its next refund would
 * otherwise fail at COMMIT for a fault not its own.
 */
export class RefundsOfTheirPayment1763800058000 implements MigrationInterface {
  name = 'RefundsOfTheirPayment1763800058000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE UNIQUE INDEX payments_id_order_currency ON payments (id, order_id, currency)`,
    );
    await q.query(`
      UPDATE payments p
         SET refund_reserved = s.held
        FROM (SELECT p2.id, COALESCE(sum(r.amount) FILTER (WHERE r.status IN ('pending', 'succeeded')), 0) AS held
                FROM payments p2 JOIN refunds r ON r.payment_id = p2.id
               GROUP BY p2.id) s
       WHERE p.id = s.id AND p.refund_reserved <> s.held`);
    await q.query(`
      UPDATE payments p SET refund_reserved = 0
       WHERE p.refund_reserved <> 0 AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id)`);
    // (refunds_payment_id_fkey, which this key implies, goes in a migration of its own: dropping a
    // foreign key drops its triggers on `payments`, under ACCESS EXCLUSIVE — held here, it kept
    // every read of payments waiting until this migration's COMMIT: diff review)
    await q.query(`
      ALTER TABLE refunds
        ADD CONSTRAINT refunds_of_their_payment FOREIGN KEY (payment_id, order_id, currency)
          REFERENCES payments (id, order_id, currency)`);
    await q.query(`
      CREATE FUNCTION refund_reserved_of_refunds() RETURNS trigger
      LANGUAGE plpgsql
      SET plan_cache_mode = force_generic_plan AS $$
      DECLARE
        v_payment uuid;
        v_reserved bigint;
        v_held bigint;
      BEGIN
        IF TG_TABLE_NAME = 'payments' THEN
          v_payment := NEW.id;
        ELSIF TG_OP = 'DELETE' THEN
          v_payment := OLD.payment_id;
        ELSE
          v_payment := NEW.payment_id;
        END IF;
        -- one statement, one snapshot: read in two, a refund and its counter committed by another
        -- transaction between them looked like a breach (diff review: ~0.7% of concurrent settles)
        SELECT p.refund_reserved,
               (SELECT COALESCE(sum(r.amount), 0)
                  FROM refunds r
                 WHERE r.payment_id = p.id AND r.status IN ('pending', 'succeeded'))
          INTO v_reserved, v_held
          FROM payments p WHERE p.id = v_payment;
        IF NOT FOUND THEN
          RETURN NULL;
        END IF;
        IF v_reserved <> v_held THEN
          RAISE EXCEPTION 'payment % reserves % for refunds; its pending and succeeded refunds come to %',
            v_payment, v_reserved, v_held
            USING ERRCODE = '23514', CONSTRAINT = 'payments_refund_reserved_of_refunds';
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE CONSTRAINT TRIGGER refunds_reserved_sum
        AFTER INSERT OR UPDATE OF payment_id, amount, status OR DELETE ON refunds
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION refund_reserved_of_refunds()`);
    await q.query(`
      CREATE CONSTRAINT TRIGGER payments_refund_reserved_sum
        AFTER UPDATE OF refund_reserved ON payments
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (OLD.refund_reserved IS DISTINCT FROM NEW.refund_reserved)
        EXECUTE FUNCTION refund_reserved_of_refunds()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER payments_refund_reserved_sum ON payments`);
    await q.query(`DROP TRIGGER refunds_reserved_sum ON refunds`);
    await q.query(`DROP FUNCTION refund_reserved_of_refunds()`);
    await q.query(`ALTER TABLE refunds DROP CONSTRAINT refunds_of_their_payment`);
    await q.query(`DROP INDEX payments_id_order_currency`);
  }
}
