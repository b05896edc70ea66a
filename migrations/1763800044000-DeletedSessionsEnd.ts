import { MigrationInterface, QueryRunner } from 'typeorm';
import { SESSION_PURGE_SETTING } from '../src/auth/session-purge';

/**
 * Deleting an account ends its sessions, whoever deletes it. Its refresh-token families went with
 * it (ON DELETE CASCADE), and with them the record the API processes read revocations from
 * (RevokedSessions): a deleted admin's access token kept the admin's permissions — refunds,
 * catalog writes, the queue board — until it expired (up to 15 min); only the routes that read
 * the account (GET /v1/me, a checkout's foreign key) noticed. Each family deleted while not
 * revoked now leaves a tombstone, stamped at COMMIT (deferred: an operator's transaction left
 * open past the polls' look-back would be missed, as with users_role_changed), which the polls
 * read with the revocations. The purge of ended sessions says so in its transaction
 * (SESSION_PURGE_SETTING) and leaves none.
 */
export class DeletedSessionsEnd1763800044000 implements MigrationInterface {
  name = 'DeletedSessionsEnd1763800044000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE deleted_sessions (
        family_id uuid NOT NULL,
        deleted_at timestamptz NOT NULL,
        CONSTRAINT deleted_sessions_pkey PRIMARY KEY (family_id)
      )`);
    await q.query(`CREATE INDEX deleted_sessions_deleted_at_idx ON deleted_sessions (deleted_at)`);
    await q.query(`
      CREATE FUNCTION refresh_family_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('${SESSION_PURGE_SETTING}', true) IS DISTINCT FROM 'on' THEN
          INSERT INTO deleted_sessions (family_id, deleted_at)
          VALUES (OLD.id, clock_timestamp())
          ON CONFLICT (family_id) DO NOTHING;
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(
      `CREATE CONSTRAINT TRIGGER refresh_family_deleted AFTER DELETE ON refresh_token_families
         DEFERRABLE INITIALLY DEFERRED
         FOR EACH ROW WHEN (OLD.revoked_at IS NULL) EXECUTE FUNCTION refresh_family_deleted()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER refresh_family_deleted ON refresh_token_families`);
    await q.query(`DROP FUNCTION refresh_family_deleted()`);
    await q.query(`DROP TABLE deleted_sessions`);
  }
}
