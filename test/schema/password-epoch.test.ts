import type { QueryRunner } from 'typeorm';
import { PasswordEpoch1763800041000 } from '../../migrations/1763800041000-PasswordEpoch';
import { NewPasswordEndsSessions1763800047000 } from '../../migrations/1763800047000-NewPasswordEndsSessions';
import { REHASH_SETTING, epochOfHashSql, passwordEpochOf } from '../../src/users/password-epoch';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * users.password_epoch, backfilled in SQL with the very tag the marks of own clients held before
 * (a digest of the hash): a deployment of this migration forgets no owner's device.
 */
describe('migration PasswordEpoch', () => {
  let db: TestDatabase;
  const runner = () =>
    ({ query: (sql: string) => db.pool.query(sql).then((r) => r.rows) }) as unknown as QueryRunner;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("gives each account the tag its own clients' marks already hold, and refuses a malformed one", async () => {
    const migration = new PasswordEpoch1763800041000();
    const later = new NewPasswordEndsSessions1763800047000(); // its trigger reads the column
    await later.down(runner());
    await migration.down(runner());
    const hashes = [
      '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA',
      '$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHQ$c29tZWhhc2g', // an older one
      '', // nothing a hash could be: still a tag of its own
    ];
    for (const [i, hash] of hashes.entries()) {
      await db.pool.query(
        `INSERT INTO users (email, name, password_hash) VALUES ($1, 'Epoch', $2)`,
        [`epoch-${i}@schema.test`, hash],
      );
    }
    await migration.up(runner());
    await later.up(runner());
    const { rows } = await db.pool.query<{ password_hash: string; password_epoch: string }>(
      `SELECT password_hash, password_epoch FROM users WHERE email LIKE 'epoch-%@schema.test' ORDER BY email`,
    );
    expect(rows.map((r) => r.password_epoch)).toEqual(hashes.map(passwordEpochOf));
    // none contains '+', '/' or '=' (base64url, as Node's digest): across many hashes, both alphabets' ends appear
    const many = Array.from({ length: 200 }, (_, i) => `$argon2id$v=19$m=19456,t=2,p=1$${i}$x`);
    const sql = await db.pool.query<{ tag: string }>(
      `SELECT ${epochOfHashSql('h')} AS tag FROM unnest($1::text[]) WITH ORDINALITY AS u(h, n) ORDER BY n`,
      [many],
    );
    expect(sql.rows.map((r) => r.tag)).toEqual(many.map(passwordEpochOf));
    expect(sql.rows.some((r) => /[-_]/.test(r.tag))).toBe(true);
    await expect(
      db.pool.query(
        `UPDATE users SET password_epoch = 'short' WHERE email = 'epoch-0@schema.test'`,
      ),
    ).rejects.toMatchObject({ code: '23514', constraint: 'users_password_epoch_check' });
  });

  it("keeps writers that know no epoch right (an older build during a rolling deploy, an operator's UPDATE); only a rehash keeps the epoch", async () => {
    const epochOf = async (email: string) =>
      (
        await db.pool.query(`SELECT password_hash, password_epoch FROM users WHERE email = $1`, [
          email,
        ])
      ).rows[0] as {
        password_hash: string;
        password_epoch: string;
      };
    // an older build's registration: no epoch named — the hash's, not a NOT NULL refusal
    await db.pool.query(
      `INSERT INTO users (email, name, password_hash) VALUES ('old-build@schema.test', 'Old', 'hash-1')`,
    );
    expect((await epochOf('old-build@schema.test')).password_epoch).toBe(passwordEpochOf('hash-1'));
    // its password change (or an operator's reset): a new hash over the same epoch — a new epoch
    await db.pool.query(
      `UPDATE users SET password_hash = 'hash-2', updated_at = now() WHERE email = 'old-build@schema.test'`,
    );
    expect((await epochOf('old-build@schema.test')).password_epoch).toBe(passwordEpochOf('hash-2'));
    // its admin:create upsert over an existing account: a new epoch as well
    await db.pool.query(
      `INSERT INTO users (email, name, role, password_hash) VALUES ('old-build@schema.test', 'Old', 'admin', 'hash-3')
       ON CONFLICT (email) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, updated_at = now()`,
    );
    expect(await epochOf('old-build@schema.test')).toEqual({
      password_hash: 'hash-3',
      password_epoch: passwordEpochOf('hash-3'),
    });
    // this build's rehash says so in its transaction: the epoch stays — and only in that transaction
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('${REHASH_SETTING}', 'on', true)`);
      await client.query(
        `UPDATE users SET password_hash = 'hash-3-rehashed' WHERE email = 'old-build@schema.test'`,
      );
      await client.query('COMMIT');
      expect(await epochOf('old-build@schema.test')).toEqual({
        password_hash: 'hash-3-rehashed',
        password_epoch: passwordEpochOf('hash-3'),
      });
      await client.query(
        `UPDATE users SET password_hash = 'hash-4' WHERE email = 'old-build@schema.test'`,
      );
      expect((await epochOf('old-build@schema.test')).password_epoch).toBe(
        passwordEpochOf('hash-4'),
      );
    } finally {
      client.release();
    }
    // a write naming the new epoch itself (this build's password change) is taken as written
    await db.pool.query(
      `UPDATE users SET password_hash = 'hash-5', password_epoch = $1 WHERE email = 'old-build@schema.test'`,
      ['written-by-the-app-abc'],
    );
    expect((await epochOf('old-build@schema.test')).password_epoch).toBe('written-by-the-app-abc');
    // an upsert writing the very hash the account has (admin:create promoting a kept password)
    await db.pool.query(
      `INSERT INTO users (email, name, role, password_hash) VALUES ('old-build@schema.test', 'Old', 'admin', 'hash-5')
       ON CONFLICT (email) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, updated_at = now()`,
    );
    expect((await epochOf('old-build@schema.test')).password_epoch).toBe('written-by-the-app-abc');
    // a write that leaves the hash alone leaves the epoch alone
    await db.pool.query(`UPDATE users SET role = 'staff' WHERE email = 'old-build@schema.test'`);
    expect((await epochOf('old-build@schema.test')).password_epoch).toBe('written-by-the-app-abc');
  });
});
