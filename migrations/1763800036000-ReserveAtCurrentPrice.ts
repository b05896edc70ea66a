import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `reserve_stock` also refuses a line priced other than the product is now, judged under the
 * inventory row locks — with SQLSTATE 40001 (serialization_failure), which the transaction's retry
 * (TransactionHost) answers by running the checkout again: it reads the price anew and the order is
 * placed at the new one. The checkout's price snapshot is read with BEGIN, without a lock, so a
 * checkout queued on a hot row during a sale committed its order at the old price after an admin's
 * price correction had been answered. The correction (CatalogAdminService.updateProduct) now locks
 * the product's inventory row after its UPDATE, as a deactivation does, so it waits for a checkout
 * holding that lock, and a checkout that locks after it sees the new price here.
 */
const OFF_SALE_GUARD = `-- 1b. a statement of its own too (a snapshot taken once the locks are ours): a product
        --     taken off sale by a commit that came before is not sold
        PERFORM raise_product_unavailable(jsonb_agg(p.id ORDER BY p.id))
           FROM products p WHERE p.id = ANY(p_product_ids) AND NOT p.active HAVING count(*) > 0;`;

const REPRICED_GUARD = `${OFF_SALE_GUARD}
        -- 1c. and a statement of its own: a line priced from a snapshot older than a price change
        --     that committed before is not sold at that price — the transaction is run again
        PERFORM raise_price_changed(jsonb_agg(oi.product_id ORDER BY oi.product_id))
           FROM order_items oi JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
          WHERE oi.order_id = p_order_id
            AND (oi.unit_price_amount <> p.price_amount OR o.currency <> p.currency)
         HAVING count(*) > 0;`;

const reserveStock = (guard: string) => `
      CREATE OR REPLACE FUNCTION reserve_stock(p_order_id uuid, p_product_ids uuid[], p_quantities int[],
                                    p_at timestamptz)
      RETURNS TABLE ("productId" uuid, available int)
      LANGUAGE plpgsql VOLATILE AS $$
      #variable_conflict use_column
      BEGIN
        -- 1. the row locks, in ascending product id (the LockRows step runs above the sort)
        PERFORM 1 FROM inventory_items i WHERE i.product_id = ANY(p_product_ids)
          ORDER BY i.product_id FOR UPDATE;
        ${guard}
        -- 2. a statement of its own, so a snapshot of its own (a VOLATILE function takes one per
        --    statement under READ COMMITTED), taken once the locks are ours: it sees exactly the
        --    versions locked. Lines not moved are short: raise with the shortfalls.
        RETURN QUERY
        WITH req AS (
          SELECT * FROM unnest(p_product_ids, p_quantities) AS r(product_id, quantity)
        ), moved AS (
          UPDATE inventory_items i
             SET reserved = i.reserved + r.quantity, updated_at = p_at
            FROM req r
           WHERE i.product_id = r.product_id AND i.on_hand - i.reserved >= r.quantity
          RETURNING i.product_id, r.quantity, i.on_hand - i.reserved AS available
        ), ledger AS (
          INSERT INTO stock_movements
            (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
          SELECT product_id, 'reserve', 0, quantity, 'order', p_order_id, p_at FROM moved
        ), short AS (
          SELECT r.product_id, r.quantity, coalesce(i.on_hand - i.reserved, 0) AS available
            FROM req r LEFT JOIN inventory_items i ON i.product_id = r.product_id
           WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.product_id = r.product_id)
        )
        SELECT NULL::uuid, NULL::int
          FROM (SELECT raise_insufficient_stock(jsonb_agg(jsonb_build_object(
                  'productId', product_id, 'requested', quantity, 'available', available)
                  ORDER BY product_id))
                  FROM short HAVING count(*) > 0) raised
        UNION ALL
        SELECT product_id, available FROM moved;
      END
      $$`;

export class ReserveAtCurrentPrice1763800036000 implements MigrationInterface {
  name = 'ReserveAtCurrentPrice1763800036000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION raise_price_changed(product_ids jsonb) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'price_changed' USING ERRCODE = '40001', DETAIL = product_ids::text;
      END
      $$`);
    await q.query(reserveStock(REPRICED_GUARD));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(reserveStock(OFF_SALE_GUARD));
    await q.query(`DROP FUNCTION raise_price_changed(jsonb)`);
  }
}
