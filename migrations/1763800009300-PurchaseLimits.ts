import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Per-customer purchase limits (issue 10, finding 4): the function the checkout's limit check
 * calls to abort its transaction with the breached caps as the error's DETAIL (like
 * raise_insufficient_stock, it travels in the message that carries COMMIT), and an index that
 * finds a customer's open unpaid orders without reading their whole order history.
 */
export class PurchaseLimits1763800009300 implements MigrationInterface {
  name = 'PurchaseLimits1763800009300';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION raise_purchase_limit_exceeded(breaches jsonb) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'purchase_limit_exceeded' USING ERRCODE = 'P0001', DETAIL = breaches::text;
      END
      $$`);
    await q.query(
      `CREATE INDEX orders_user_unpaid_idx ON orders (user_id)
        WHERE status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX orders_user_unpaid_idx`);
    await q.query(`DROP FUNCTION raise_purchase_limit_exceeded(jsonb)`);
  }
}
