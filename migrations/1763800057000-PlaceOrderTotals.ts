import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `place_order` refuses (23514, as a CHECK would) an order whose total is not the sum of its line
 * totals, or whose history does not end at its status: the function stored the total and the
 * history as given, so a code path computing either wrongly would have charged another amount
 * than the lines say (constraints review). Each line's total is the price times the quantity
 * already (`order_items`' CHECK). Computed from the arguments, no read: the checkout's path.
 *
 * `CREATE OR REPLACE` drops the function's `plan_cache_mode` (1763800037000), so it is named again.
 */
const placeOrder = (checked: boolean) => `
      CREATE OR REPLACE FUNCTION place_order(
        p_id uuid, p_user_id uuid, p_status text, p_currency text, p_total_amount bigint,
        p_reservation_expires_at timestamptz, p_at timestamptz,
        p_product_ids uuid[], p_skus text[], p_names text[], p_quantities int[],
        p_unit_prices bigint[], p_line_totals bigint[],
        p_actor text, p_from text[], p_to text[], p_reasons text[]
      ) RETURNS void
      LANGUAGE plpgsql
      SET plan_cache_mode = force_generic_plan AS $$
      BEGIN${
        checked
          ? `
        IF p_total_amount IS DISTINCT FROM (SELECT coalesce(sum(t), 0) FROM unnest(p_line_totals) AS t) THEN
          RAISE EXCEPTION 'place_order: order % totals % but its lines %', p_id, p_total_amount,
            (SELECT coalesce(sum(t), 0) FROM unnest(p_line_totals) AS t)
            USING ERRCODE = '23514', CONSTRAINT = 'orders_total_of_lines';
        END IF;
        IF p_to[cardinality(p_to)] IS DISTINCT FROM p_status THEN
          RAISE EXCEPTION 'place_order: order % is % but its history ends at %', p_id, p_status,
            p_to[cardinality(p_to)]
            USING ERRCODE = '23514', CONSTRAINT = 'orders_history_of_status';
        END IF;`
          : ''
      }
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
      $$`;

export class PlaceOrderTotals1763800057000 implements MigrationInterface {
  name = 'PlaceOrderTotals1763800057000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(placeOrder(true));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(placeOrder(false));
  }
}
