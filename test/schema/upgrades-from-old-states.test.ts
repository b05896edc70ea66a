import type { Pool } from 'pg';
import { migrate } from '../support/databases';
import { migrateUpTo } from '../support/partial-migrations';
import {
  createEmptyDatabase,
  createTestDatabase,
  type TestDatabase,
} from '../support/test-database';

/**
 * What a schema comparison looks at: every constraint, column, trigger, index and function of the
 * public schema.
 */
async function schemaOf(pool: Pool): Promise<unknown> {
  const constraints = await pool.query(
    `SELECT conrelid::regclass::text AS "table", conname, pg_get_constraintdef(oid) AS def, convalidated
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`,
  );
  const columns = await pool.query(
    `SELECT table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`,
  );
  const triggers = await pool.query(
    `SELECT tgrelid::regclass::text AS "table", tgname, pg_get_triggerdef(oid) AS def
       FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2`,
  );
  const indexes = await pool.query(
    `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`,
  );
  const functions = await pool.query(
    `SELECT proname, pg_get_functiondef(oid) AS def
       FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind = 'f' ORDER BY 1, 2`,
  );
  return {
    constraints: constraints.rows,
    columns: columns.rows,
    triggers: triggers.rows,
    indexes: indexes.rows,
    functions: functions.rows,
  };
}

/** `refund_reserved_of_refunds()` as 1763800058000 created it at 5590335: two statements, two snapshots. */
const TWO_SNAPSHOT_REFUND_CHECK = `
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
    SELECT p.refund_reserved INTO v_reserved FROM payments p WHERE p.id = v_payment;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    SELECT COALESCE(sum(r.amount), 0) INTO v_held
      FROM refunds r
     WHERE r.payment_id = v_payment AND r.status IN ('pending', 'succeeded');
    IF v_reserved <> v_held THEN
      RAISE EXCEPTION 'payment % reserves % for refunds; its pending and succeeded refunds come to %',
        v_payment, v_reserved, v_held
        USING ERRCODE = '23514', CONSTRAINT = 'payments_refund_reserved_of_refunds';
    END IF;
    RETURN NULL;
  END $$`;

/**
 * A database migrated step by step through the project's history, in a state an older migration
 * left it in on purpose, runs the remaining migrations (the real CLI) to the same schema as a
 * database migrated in one go.
 */
describe('upgrades from states older migrations left behind', () => {
  let clean: TestDatabase;
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    clean = await createTestDatabase();
  });
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });
  afterAll(async () => {
    await clean?.drop();
  });

  it('two accounts whose emails differ only in Unicode normalization (1763800014000 leaves one decomposed): the rest runs, to the clean schema', async () => {
    db = await createEmptyDatabase();
    await migrateUpTo(db.url, 1763800013000);
    await db.pool.query(
      `INSERT INTO users (email, name, password_hash, created_at)
       VALUES (U&'jos\\00E9@example.com', 'Composed', '$argon2id$v=19$m=19456,t=2,p=1$YQ$Yg', now() - interval '1 day'),
              (U&'jose\\0301@example.com', 'Decomposed', '$argon2id$v=19$m=19456,t=2,p=1$Yw$ZA', now())`,
    );

    migrate(db.url); // throws on a failed run

    const { rows } = await db.pool.query<{ name: string; nfc: boolean; epoch: string }>(
      `SELECT name, email IS NFC NORMALIZED AS nfc, password_epoch AS epoch FROM users ORDER BY name`,
    );
    expect(rows.map(({ name, nfc }) => ({ name, nfc }))).toEqual([
      { name: 'Composed', nfc: true },
      { name: 'Decomposed', nfc: false },
    ]);
    expect(rows.every((r) => /^[A-Za-z0-9_-]{22}$/.test(r.epoch))).toBe(true);
    expect(await schemaOf(db.pool)).toEqual(await schemaOf(clean.pool));
  });

  it('1763800058000 as it was at 5590335 (refunds_payment_id_fkey dropped, the refund check reading in two snapshots): the rest runs, to the clean schema', async () => {
    db = await createEmptyDatabase();
    await migrateUpTo(db.url, 1763800058000);
    await db.pool.query(`ALTER TABLE refunds DROP CONSTRAINT refunds_payment_id_fkey`);
    await db.pool.query(TWO_SNAPSHOT_REFUND_CHECK);

    migrate(db.url); // throws on a failed run

    expect(await schemaOf(db.pool)).toEqual(await schemaOf(clean.pool));
  });
});
