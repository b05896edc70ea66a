import type { QueryRunner } from 'typeorm';
import { LegacyEmailSessions1763800019000 } from '../../migrations/1763800019000-LegacyEmailSessions';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * An account left with a decomposed email by the NFC migration cannot sign in, and its password
 * cannot change (its row fails users_email_nfc): its sessions are revoked, the other spelling's kept.
 */
describe('migration LegacyEmailSessions', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("revokes the live sessions of accounts whose email is not NFC, and no one else's", async () => {
    // the state the NFC migration leaves: two spellings of one address, the younger decomposed
    await db.pool.query(`ALTER TABLE users DROP CONSTRAINT users_email_nfc`);
    const insertUser = async (email: string) =>
      (
        await db.pool.query<{ id: string }>(
          `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ($1, 'n', 'customer', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
          [email],
        )
      ).rows[0].id;
    const composed = await insertUser('jos\u00e9@shop.test');
    const decomposed = await insertUser('jose\u0301@shop.test');
    await db.pool.query(
      `ALTER TABLE users ADD CONSTRAINT users_email_nfc CHECK (email IS NFC NORMALIZED) NOT VALID`,
    );
    for (const user of [composed, decomposed]) {
      await db.pool.query(
        `INSERT INTO refresh_token_families (user_id, created_at, expires_at) VALUES ($1, now(), now() + interval '30 days')`,
        [user],
      );
    }
    // the failure it answers: any new version of the decomposed row is refused
    await expect(
      db.pool.query(`UPDATE users SET password_hash = 'y' WHERE id = $1`, [decomposed]),
    ).rejects.toThrow(/users_email_nfc/);

    await new LegacyEmailSessions1763800019000().up({
      query: (sql: string) => db.pool.query(sql),
    } as unknown as QueryRunner);
    const { rows } = await db.pool.query(
      `SELECT user_id, revoked_reason FROM refresh_token_families WHERE user_id = ANY($1::uuid[])`,
      [[composed, decomposed]],
    );
    expect(Object.fromEntries(rows.map((r) => [r.user_id, r.revoked_reason]))).toEqual({
      [composed]: null,
      [decomposed]: 'email-not-nfc',
    });
  });
});
