import { MigrationInterface, QueryRunner } from 'typeorm';
import { REHASH_SETTING, epochOfHashSql } from '../src/users/password-epoch';

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
 * SQL: no own client is forgotten by this migration. It is no copy of the hash. (The account's
 * per-password budgets — login-account-day, refresh-account(-day) — start afresh once, at deploy:
 * their keys were a digest of the hash, and cannot be told from the epoch.)
 *
 * A trigger keeps writers that know nothing of the column right — an older build still serving
 * during a rolling deploy (or after a code-only rollback), an operator's UPDATE: a row inserted
 * without an epoch gets its hash's, and a new hash written over an unchanged epoch starts a new
 * one — unless the transaction says it is a rehash of the same password (REHASH_SETTING), which
 * only this build's sign-in says. Without it, a password changed through an old instance kept the
 * thief's marks valid, and the old build's inserts (registrations) failed on NOT NULL.
 */
export class PasswordEpoch1763800041000 implements MigrationInterface {
  name = 'PasswordEpoch1763800041000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users ADD COLUMN password_epoch text`);
    // The backfill writes a new version of every row, and a row 1763800014000-EmailsNfc left with
    // a decomposed email fails its NOT VALID `users_email_nfc` (23514: the upgrade stopped there
    // for good). Where such a row exists, the check is lifted for the backfill and put back
    // exactly as it was (its own definition, NOT VALID): the schema is the one clean data gets.
    // (Edited after it was applied: only to succeed where it failed — checksums.sha256.)
    const [nfc] = (await q.query(
      `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
        WHERE c.conrelid = 'users'::regclass AND c.conname = 'users_email_nfc'
          AND EXISTS (SELECT 1 FROM users WHERE email IS NOT NFC NORMALIZED)`,
    )) as { def: string }[];
    if (nfc) await q.query(`ALTER TABLE users DROP CONSTRAINT users_email_nfc`);
    await q.query(`UPDATE users SET password_epoch = ${epochOfHashSql('password_hash')}`);
    if (nfc) await q.query(`ALTER TABLE users ADD CONSTRAINT users_email_nfc ${nfc.def}`);
    await q.query(`ALTER TABLE users ALTER COLUMN password_epoch SET NOT NULL`);
    await q.query(
      `ALTER TABLE users ADD CONSTRAINT users_password_epoch_check CHECK (password_epoch ~ '^[A-Za-z0-9_-]{22}$')`,
    );
    await q.query(`
      CREATE FUNCTION users_password_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          IF NEW.password_epoch IS NULL THEN
            NEW.password_epoch := ${epochOfHashSql('NEW.password_hash')};
          END IF;
        ELSIF NEW.password_hash IS DISTINCT FROM OLD.password_hash
          AND NEW.password_epoch IS NOT DISTINCT FROM OLD.password_epoch
          AND current_setting('${REHASH_SETTING}', true) IS DISTINCT FROM 'on' THEN
          NEW.password_epoch := ${epochOfHashSql('NEW.password_hash')};
        END IF;
        RETURN NEW;
      END $$`);
    await q.query(
      `CREATE TRIGGER users_password_epoch BEFORE INSERT OR UPDATE OF password_hash ON users
         FOR EACH ROW EXECUTE FUNCTION users_password_epoch()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER users_password_epoch ON users`);
    await q.query(`DROP FUNCTION users_password_epoch()`);
    await q.query(`ALTER TABLE users DROP COLUMN password_epoch`);
  }
}
