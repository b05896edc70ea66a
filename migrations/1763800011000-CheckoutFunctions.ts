import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The checkout's two write statements as server-side functions (issue 14): PL/pgSQL keeps each
 * statement's plan for the session, so a checkout no longer has them parsed and planned every
 * time (their text, with every value inlined, was most of the COMMIT message). Each is called
 * only by the repository that owns its tables: place_order by the orders folder
 * (OrderRepository.insertOnCommit), reserve_stock by the inventory folder
 * (StockReservationRepository.reserveAllOnCommit), which documents the reservation's two steps.
 */
export class CheckoutFunctions1763800011000 implements MigrationInterface {
  name = 'CheckoutFunctions1763800011000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION place_order(
        p_id uuid, p_user_id uuid, p_status text, p_currency text, p_total_amount bigint,
        p_reservation_expires_at timestamptz, p_at timestamptz,
        p_product_ids uuid[], p_skus text[], p_names text[], p_quantities int[],
        p_unit_prices bigint[], p_line_totals bigint[],
        p_actor text, p_from text[], p_to text[], p_reasons text[]
      ) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO orders (id, user_id, status, currency, total_amount, reservation_expires_at,
                            created_at, updated_at)
        VALUES (p_id, p_user_id, p_status, p_currency, p_total_amount, p_reservation_expires_at,
                p_at, p_at);
        INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_amount,
                                 line_total_amount)
        SELECT p_id, l.* FROM unnest(p_product_ids, p_skus, p_names, p_quantities, p_unit_prices,
                                     p_line_totals) AS l;
        INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
        SELECT p_id, h.f, h.t, h.r, p_actor, p_at FROM unnest(p_from, p_to, p_reasons) AS h(f, t, r);
      END
      $$`);
    await q.query(`
      CREATE FUNCTION reserve_stock(p_order_id uuid, p_product_ids uuid[], p_quantities int[],
                                    p_at timestamptz)
      RETURNS TABLE ("productId" uuid, available int)
      LANGUAGE plpgsql VOLATILE AS $$
      #variable_conflict use_column
      BEGIN
        -- 1. the row locks, in ascending product id (the LockRows step runs above the sort)
        PERFORM 1 FROM inventory_items i WHERE i.product_id = ANY(p_product_ids)
          ORDER BY i.product_id FOR UPDATE;
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
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION reserve_stock(uuid, uuid[], int[], timestamptz)`);
    await q.query(
      `DROP FUNCTION place_order(uuid, uuid, text, text, bigint, timestamptz, timestamptz, uuid[], text[], text[], int[], bigint[], bigint[], text, text[], text[], text[])`,
    );
  }
}
