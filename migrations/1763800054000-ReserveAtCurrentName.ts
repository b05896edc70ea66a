import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `reserve_stock` also refuses a line named from a snapshot older than a rename of its product
 * that committed before the row locks were ours — with `price_changed` (40001), so the checkout is
 * run again and its lines copy the new name. A rename now takes the stock row lock too (as a
 * price change does: CatalogAdminService#updateProduct), so the checkouts holding or queued on the
 * row commit before it is answered; one that read its snapshot before the rename and locked the
 * row after it copied the old name into an order placed after the rename was answered (cache
 * review). The body is 1763800051000's, the name compared beside the price.
 *
 * `CREATE OR REPLACE` drops the function's `plan_cache_mode` (1763800037000), so it is named again.
 */
const guard = (
  withName: boolean,
) => `-- 1b. a statement of its own too (a snapshot taken once the locks are ours): a product
        --     taken off sale by a commit that came before is not sold
        PERFORM raise_product_unavailable(jsonb_agg(p.id ORDER BY p.id))
           FROM products p WHERE p.id = ANY(p_product_ids) AND NOT p.active HAVING count(*) > 0;
        -- 1c. and a statement of its own: a line priced from a snapshot older than a price change
        --     that committed before, or an order placed before its product went off sale and
        --     back (drawn before the locks were ours),${withName ? ' or named from a snapshot older than a\n        --     rename that committed before,' : ''} is not sold so — the transaction is run again
        PERFORM raise_price_changed(jsonb_agg(oi.product_id ORDER BY oi.product_id))
           FROM order_items oi JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
          WHERE oi.order_id = p_order_id
            AND (oi.unit_price_amount <> p.price_amount OR o.currency <> p.currency
                 OR p.on_sale_epoch > o.placed_epoch${withName ? '\n                 OR oi.name <> p.name' : ''})
         HAVING count(*) > 0;`;

const reserveStock = (withName: boolean) => `
      CREATE OR REPLACE FUNCTION reserve_stock(p_order_id uuid, p_product_ids uuid[], p_quantities int[],
                                    p_at timestamptz)
      RETURNS TABLE ("productId" uuid, available int)
      LANGUAGE plpgsql VOLATILE
      SET plan_cache_mode = force_generic_plan AS $$
      #variable_conflict use_column
      BEGIN
        -- 1. the row locks, in ascending product id (the LockRows step runs above the sort)
        PERFORM 1 FROM inventory_items i WHERE i.product_id = ANY(p_product_ids)
          ORDER BY i.product_id FOR UPDATE;
        ${guard(withName)}
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

export class ReserveAtCurrentName1763800054000 implements MigrationInterface {
  name = 'ReserveAtCurrentName1763800054000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(reserveStock(true));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(reserveStock(false));
  }
}
