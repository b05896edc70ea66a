import { MigrationInterface, QueryRunner } from 'typeorm';
import { NEW_PASSWORD_SETTING } from '../src/users/password-epoch';

/**
 * A new password ends the account's sessions, whoever writes it. There is no command that resets
 * a customer's password, so after an account takeover an operator's `UPDATE users SET
 * password_hash = …` is the way to give it back; that UPDATE got a new epoch (migration
 * 1763800041000) but ended nothing: the thief's sessions went on refreshing for up to 30 days,
 * and the address the thief signed in from stayed the owner's own client (spared the account's
 * ceiling of failed sign-ins, RefreshTokenRepository#openedFrom), its mark written back under the
 * new epoch.
 *
 * The trigger runs at COMMIT (deferred, stamped then, as for a role change: migration
 * 1763800042000) when the epoch changes — a new password, not a sign-in's rehash of the same one —
 * and revokes the live families ('password-reset': the API processes read revocations every 2 s,
 * so their access tokens stop within seconds) and forgets every client they were opened from.
 * A writer that does both itself, with the marks that stop the access tokens at once and keeping
 * the client the owner changed it from (a password change, admin:create), says so in its
 * transaction (NEW_PASSWORD_SETTING).
 */
export class NewPasswordEndsSessions1763800047000 implements MigrationInterface {
  name = 'NewPasswordEndsSessions1763800047000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION users_password_set() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('${NEW_PASSWORD_SETTING}', true) IS DISTINCT FROM 'on' THEN
          UPDATE refresh_token_families
             SET revoked_at = clock_timestamp(), revoked_reason = 'password-reset'
           WHERE user_id = NEW.id AND revoked_at IS NULL;
          UPDATE refresh_token_families
             SET client_key = NULL
           WHERE user_id = NEW.id AND client_key IS NOT NULL;
        END IF;
        RETURN NULL;
      END $$`);
    // (no column list: the epoch is written by a BEFORE trigger, not named by the operator's
    // UPDATE, and UPDATE OF fires only for the columns a statement names)
    await q.query(
      `CREATE CONSTRAINT TRIGGER users_password_set AFTER UPDATE ON users
         DEFERRABLE INITIALLY DEFERRED
         FOR EACH ROW WHEN (OLD.password_epoch IS DISTINCT FROM NEW.password_epoch)
         EXECUTE FUNCTION users_password_set()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER users_password_set ON users`);
    await q.query(`DROP FUNCTION users_password_set()`);
  }
}
