import { MigrationInterface, QueryRunner } from 'typeorm';
import { ROLE_CHANGE_SETTING } from '../src/users/role-change';

/**
 * A new role ends the account's sessions, whoever writes it. An access token carries its role
 * (the permissions guard reads it from there), so a session opened as an admin kept the admin's
 * permissions after an operator lowered the role with SQL — the only way to lower one — until its
 * access token expired (up to 15 min), and refreshed into a customer's only then. The trigger
 * revokes the account's live families as a password change does ('role-changed'): the API
 * processes read revocations from the database every 2 s (RevokedSessions), so those access
 * tokens stop within seconds, and the refresh tokens at once. It runs at COMMIT (deferred) and
 * stamps the time then: the polls read back only a couple of minutes, and an operator's
 * transaction left open longer than that, stamped with its UPDATE's time, was never read.
 * A writer that ends the sessions itself, with the revocation marks that stop their access tokens
 * at once (admin:create), says so in its transaction (ROLE_CHANGE_SETTING), and the trigger
 * leaves them to it.
 */
export class RoleChangeEndsSessions1763800042000 implements MigrationInterface {
  name = 'RoleChangeEndsSessions1763800042000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION users_role_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('${ROLE_CHANGE_SETTING}', true) IS DISTINCT FROM 'on' THEN
          UPDATE refresh_token_families
             SET revoked_at = clock_timestamp(), revoked_reason = 'role-changed'
           WHERE user_id = NEW.id AND revoked_at IS NULL;
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(
      `CREATE CONSTRAINT TRIGGER users_role_changed AFTER UPDATE OF role ON users
         DEFERRABLE INITIALLY DEFERRED
         FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role) EXECUTE FUNCTION users_role_changed()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER users_role_changed ON users`);
    await q.query(`DROP FUNCTION users_role_changed()`);
  }
}
