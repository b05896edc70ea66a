import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Indexes for the passes that re-derive lost Redis state from the database: the email
 * reconciliation reads published outbox events by `published_at` (so does the hourly purge), and
 * the revocation marks are re-written from families revoked in the last access-token lifetime.
 */
export class ReconciliationIndexes1763800015000 implements MigrationInterface {
  name = 'ReconciliationIndexes1763800015000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX outbox_published_idx ON outbox (published_at, id) WHERE status = 'published'`,
    );
    await q.query(
      `CREATE INDEX refresh_token_families_revoked_idx ON refresh_token_families (revoked_at) WHERE revoked_at IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX refresh_token_families_revoked_idx`);
    await q.query(`DROP INDEX outbox_published_idx`);
  }
}
