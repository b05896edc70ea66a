import { MigrationInterface, QueryRunner } from 'typeorm';
import { epochOfHashSql } from '../src/users/password-epoch';

/**
 * A password's epoch: a tag set whenever a password is set (a registration, a change, a reset by
 * admin:create) and kept when the same password is hashed again (a sign-in's upgrade to raised
 * argon2 parameters). The marks of the owner's own clients (sign-in limits) and the account's
 * per-password budgets are held under it. They were held under a digest of the hash itself, so a
 * rehash — a new hash of the same password — made every other device of the owner a stranger
 * again until each signed in, and started the account's budgets afresh.
 *
 * Rows written before take the tag their marks already hold (src/users/password-epoch.ts: the
 * first 22 characters of the base64url SHA-256 of `signin-credential`, NUL, the hash), computed in
 * SQL: no own client is forgotten by this migration. It is no copy of the hash.
 */
export class PasswordEpoch1763800041000 implements MigrationInterface {
  name = 'PasswordEpoch1763800041000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users ADD COLUMN password_epoch text`);
    await q.query(`UPDATE users SET password_epoch = ${epochOfHashSql('password_hash')}`);
    await q.query(`ALTER TABLE users ALTER COLUMN password_epoch SET NOT NULL`);
    await q.query(`ALTER TABLE users ADD CONSTRAINT users_password_epoch_check CHECK (password_epoch ~ '^[A-Za-z0-9_-]{22}$')`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users DROP COLUMN password_epoch`);
  }
}
