import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `refund_reserved_of_refunds()` as 1763800058000 defines it now: the counter and its refunds
 * read in one statement, one snapshot. 1763800058000 as first committed read them in two
 * (5590335), and was fixed in place afterwards (3bdb3b8); a database migrated in between kept the
 * two-snapshot function — TypeORM never reruns a migration — whose COMMIT failed (23514) for
 * refunds and their counter changed at once by another transaction (~0.7% of concurrent settles:
 * diff review). Replaced here with the same text, so every database ends with one definition; on
 * a database that ran the fixed 1763800058000 it is the same function again. (The text is
 * 1763800058000's, copied: a migration imports nothing that may change after it.)
 */
export class RefundReservedOneSnapshot1763800061000 implements MigrationInterface {
  name = 'RefundReservedOneSnapshot1763800061000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE OR REPLACE FUNCTION refund_reserved_of_refunds() RETURNS trigger
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
  }

  async down(): Promise<void> {
    // the function as every database has it since 1763800058000's fix: nothing to undo
  }
}
