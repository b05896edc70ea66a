import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A function the stock reservation statement calls to abort its transaction when a product is
 * short, with the shortfalls as the error's DETAIL. The reservation then travels in one message
 * with COMMIT (a statement that merely returned "short" rows would be committed with the order).
 */
export class ReservationGuard1763800008000 implements MigrationInterface {
  name = 'ReservationGuard1763800008000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION raise_insufficient_stock(shortfalls jsonb) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'insufficient_stock' USING ERRCODE = 'P0001', DETAIL = shortfalls::text;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION raise_insufficient_stock(jsonb)`);
  }
}
