import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The client a session was opened from: the (account, client) pair as an HMAC under a server
 * secret (SessionIssuer#clientKeyOf; never the address itself). Redis marks an account's own clients — their
 * logins skip the ceilings a stranger can fill — but Redis may lose its data; a login whose client
 * has no mark asks this record (FailedAttemptLimiter#isOwnClient), so a stranger cannot lock
 * every owner out after a Redis restart. Sessions from before this migration have none.
 */
export class SessionClientKey1763800024000 implements MigrationInterface {
  name = 'SessionClientKey1763800024000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE refresh_token_families ADD COLUMN client_key text`);
    await q.query(
      `CREATE INDEX refresh_token_families_client_idx ON refresh_token_families (client_key) WHERE client_key IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX refresh_token_families_client_idx`);
    await q.query(`ALTER TABLE refresh_token_families DROP COLUMN client_key`);
  }
}
