import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { inspect } from 'node:util';
import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { MigratingDataSource, MigrationRunFailed } from '../../src/database/migrating-data-source';
import { migrateUpTo } from '../support/partial-migrations';
import { createEmptyDatabase } from '../support/test-database';
import type { TestDatabase } from '../support/test-database';

const ROOT = join(__dirname, '..', '..');
/** What must never reach a deploy log: a password hash and a customer's email. */
const HASH = '$argon2id$v=19$m=19456,t=2,p=1$bGVha2NhbmFyeQ$SECRET-hash-canary';
const EMAIL = 'leak-canary@customer.test';
const PARAMETER = 'parameter-canary-7f3e';

class ProbeRefusedRow1700000000000 implements MigrationInterface {
  name = 'ProbeRefusedRow1700000000000';
  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE probe_secrets (secret text)`);
    await q.query(`INSERT INTO probe_secrets VALUES ($1)`, [HASH]);
    await q.query(
      `ALTER TABLE probe_secrets ADD CONSTRAINT probe_secrets_refused CHECK (secret IS NULL) NOT VALID`,
    );
    await q.query(`UPDATE probe_secrets SET secret = secret || $1`, [PARAMETER]);
  }
  async down(): Promise<void> {}
}

/** A migration whose cast fails on a row: PostgreSQL's message quotes the value (22P02). */
class ProbeCastRow1700000000001 implements MigrationInterface {
  name = 'ProbeCastRow1700000000001';
  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE probe_casts (v text)`);
    await q.query(`INSERT INTO probe_casts VALUES ($1)`, [EMAIL]);
    await q.query(`ALTER TABLE probe_casts ALTER COLUMN v TYPE uuid USING v::uuid`);
  }
  async down(): Promise<void> {}
}

/**
 * A migration that fails on a row says which migration, the SQLSTATE, the constraint and table,
 * and PostgreSQL's message — never the row (DETAIL's "Failing row contains (…)": a password hash,
 * an email), the statement or its parameters, in what `npm run migration:run` prints or in the
 * error a programmatic run throws.
 */
describe('a failing migration run prints no row data', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createEmptyDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** What a programmatic run of `migration` (recorded in `table`) throws. */
  async function failureOf(
    migration: new () => MigrationInterface,
    table: string,
  ): Promise<unknown> {
    const source = new MigratingDataSource({
      ...dataSourceOptions(db.url, { withMigrations: true }),
      migrations: [migration],
      migrationsTableName: table,
      logging: false,
      logger: 'simple-console',
    });
    await source.initialize();
    try {
      await source.runMigrations();
    } catch (err) {
      return err;
    } finally {
      await source.destroy();
    }
    throw new Error(`${migration.name} ran without failing`);
  }

  it('npm run migration:run: 1763800041000 refused on an account row names the SQLSTATE and constraint, not the row', async () => {
    await migrateUpTo(db.url, 1763800040000);
    await db.pool.query(`INSERT INTO users (email, name, password_hash) VALUES ($1, 'Leak', $2)`, [
      EMAIL,
      HASH,
    ]);
    // (what makes the backfill's new row version fail, as users_email_nfc did on a decomposed email)
    await db.pool.query(
      `ALTER TABLE users ADD CONSTRAINT users_probe_refused CHECK (password_hash NOT LIKE '%canary') NOT VALID`,
    );

    const run = spawnSync('npm', ['run', '--silent', 'migration:run'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'info' },
    });
    const output = `${run.stdout}\n${run.stderr}`;

    expect(run.status).toBe(1);
    expect(output).toContain('PasswordEpoch1763800041000');
    expect(output).toContain('23514');
    expect(output).toContain('users_probe_refused');
    expect(output).toContain('violates check constraint');
    for (const secret of [HASH, 'SECRET-hash-canary', EMAIL, 'Failing row']) {
      expect(output).not.toContain(secret);
    }
  });

  it('a programmatic run throws MigrationRunFailed, whose every field is safe to print', async () => {
    const failure = await failureOf(ProbeRefusedRow1700000000000, 'probe_migrations');
    expect(failure).toBeInstanceOf(MigrationRunFailed);
    expect(failure).toMatchObject({
      migration: 'ProbeRefusedRow1700000000000',
      sqlState: '23514',
      constraint: 'probe_secrets_refused',
      table: 'probe_secrets',
    });
    const printed = inspect(failure, { depth: null });
    expect(printed).toContain('Migration ProbeRefusedRow1700000000000 failed: SQLSTATE 23514');
    for (const secret of ['SECRET-hash-canary', PARAMETER, 'Failing row', 'UPDATE probe_secrets']) {
      expect(printed).not.toContain(secret);
    }
  });

  it("a data exception's message, which quotes the row's value, is left out: its SQLSTATE says what failed", async () => {
    const failure = await failureOf(ProbeCastRow1700000000001, 'probe_cast_migrations');
    expect(failure).toMatchObject({ migration: 'ProbeCastRow1700000000001', sqlState: '22P02' });
    const printed = inspect(failure, { depth: null });
    expect(printed).toContain('Migration ProbeCastRow1700000000001 failed: SQLSTATE 22P02');
    // what failed is said, the value it quotes is not
    expect(printed).toContain('invalid input syntax for type uuid: "…"');
    expect(printed).not.toContain(EMAIL);
  });
});
