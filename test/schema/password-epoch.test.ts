import type { QueryRunner } from 'typeorm';
import { PasswordEpoch1763800041000 } from '../../migrations/1763800041000-PasswordEpoch';
import { epochOfHashSql, passwordEpochOf } from '../../src/users/password-epoch';
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
    await migration.down(runner());
    const hashes = [
      '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA',
      '$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHQ$c29tZWhhc2g', // an older one
      '', // nothing a hash could be: still a tag of its own
    ];
    for (const [i, hash] of hashes.entries()) {
      await db.pool.query(`INSERT INTO users (email, name, password_hash) VALUES ($1, 'Epoch', $2)`, [`epoch-${i}@schema.test`, hash]);
    }
    await migration.up(runner());
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
      db.pool.query(`UPDATE users SET password_epoch = 'short' WHERE email = 'epoch-0@schema.test'`),
    ).rejects.toMatchObject({ code: '23514', constraint: 'users_password_epoch_check' });
    await expect(
      db.pool.query(`INSERT INTO users (email, name, password_hash) VALUES ('no-epoch@schema.test', 'E', 'h')`),
    ).rejects.toMatchObject({ code: '23502' });
  });
});
