import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What a sign-in reads to keep an account within SESSIONS_PER_ACCOUNT
 * (RefreshTokenRepository.revokeOthersBeyond): the account's live families, and the newest usable
 * token of each. Ended families stay 30 days and spent tokens as long as their family, so without
 * these partial indexes each sign-in would read the account's whole session history.
 */
export class LiveSessionIndexes1763800020000 implements MigrationInterface {
  name = 'LiveSessionIndexes1763800020000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX refresh_token_families_live_idx ON refresh_token_families (user_id) WHERE revoked_at IS NULL`,
    );
    await q.query(
      `CREATE INDEX refresh_tokens_unspent_idx ON refresh_tokens (family_id, issued_at) WHERE spent_at IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX refresh_tokens_unspent_idx`);
    await q.query(`DROP INDEX refresh_token_families_live_idx`);
  }
}
