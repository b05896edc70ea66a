import type { Pool } from 'pg';
import { migrate } from '../support/databases';
import { migrateUpTo } from '../support/partial-migrations';
import { createEmptyDatabase } from '../support/test-database';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/** What a schema comparison looks at: every constraint, column and trigger of the public schema. */
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
  return { constraints: constraints.rows, columns: columns.rows, triggers: triggers.rows };
}

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

  it('refunds_payment_id_fkey already dropped (1763800058000 as it was at 5590335 dropped it): the rest runs, to the clean schema', async () => {
    db = await createEmptyDatabase();
    await migrateUpTo(db.url, 1763800058000);
    await db.pool.query(`ALTER TABLE refunds DROP CONSTRAINT refunds_payment_id_fkey`);

    migrate(db.url); // throws on a failed run

    expect(await schemaOf(db.pool)).toEqual(await schemaOf(clean.pool));
  });
});
