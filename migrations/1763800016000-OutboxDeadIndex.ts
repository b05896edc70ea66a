import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The email reconciliation also reads outbox events the relay parked as dead (never published,
 * so their email was never queued), by `created_at`: a partial index, as small as the dead rows.
 */
export class OutboxDeadIndex1763800016000 implements MigrationInterface {
  name = 'OutboxDeadIndex1763800016000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX outbox_dead_idx ON outbox (created_at, id) WHERE status = 'dead'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX outbox_dead_idx`);
  }
}
