import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An order's reservation is settled once, and as it was reserved — by the database, not only by
 * the code that calls `settle_stock` (StockReservationService, which reads the lines from the
 * order's `reserve` rows and is called only from the guarded transition that ends the hold):
 *
 * - `stock_movements_settled_once`: one `release` or one `commit` per (order, product), never
 *   both. The unique (order, product, kind) allowed a release and then a commit, and a
 *   cancelled order's units committed (a call from a wrong code path) took them off another
 *   order's reservation: `reserved` fell below what live orders hold, and the ledger still summed
 *   to the counters, so no check saw it (constraints review).
 * - `settle_stock` refuses lines that are not the order's reserved ones (another product, another
 *   quantity) with 23514, as a CHECK would.
 *
 * The index's build holds a SHARE lock on `stock_movements` (ledger writes wait for it: ~1.5 s
 * per 3 million rows); it runs after 1763800055000's trigger on `orders`, never before it in one
 * transaction — a run in one transaction (`-t all`) that locked the ledger, then `orders`,
 * deadlocked with checkouts and payments, which write `orders` first and the ledger in their
 * COMMIT (diff review).
 *
 * `CREATE OR REPLACE` drops the function's `plan_cache_mode` (1763800037000), so it is named again.
 */
const settleStock = (checked: boolean) => `
      CREATE OR REPLACE FUNCTION settle_stock(p_kind text, p_order_id uuid, p_product_ids uuid[],
                                              p_quantities int[], p_at timestamptz)
      RETURNS void
      LANGUAGE plpgsql VOLATILE
      SET plan_cache_mode = force_generic_plan AS $$
      BEGIN
        IF p_kind NOT IN ('release', 'commit') THEN
          RAISE EXCEPTION 'settle_stock: unknown kind %', p_kind USING ERRCODE = '22023';
        END IF;${
          checked
            ? `
        -- 0. only the order's reserved lines, each with the units it reserved
        IF EXISTS (SELECT 1
                     FROM unnest(p_product_ids, p_quantities) AS r(product_id, quantity)
                     LEFT JOIN stock_movements m
                       ON m.order_id = p_order_id AND m.product_id = r.product_id AND m.kind = 'reserve'
                    WHERE m.reserved_delta IS DISTINCT FROM r.quantity) THEN
          RAISE EXCEPTION 'settle_stock: order % settles units it did not reserve', p_order_id
            USING ERRCODE = '23514';
        END IF;`
            : ''
        }
        -- 1. the row locks, in ascending product id (as every writer of inventory_items takes them)
        PERFORM 1 FROM inventory_items i WHERE i.product_id = ANY(p_product_ids)
          ORDER BY i.product_id FOR UPDATE;
        -- 2. a statement of its own, so it sees the versions locked; release: reserved -= q;
        --    commit: on_hand -= q as well. CHECK constraints back every bound. A product without an
        --    inventory row moves nothing and gets no ledger row.
        WITH req AS (
          SELECT * FROM unnest(p_product_ids, p_quantities) AS r(product_id, quantity)
        ), moved AS (
          UPDATE inventory_items i
             SET on_hand = i.on_hand - CASE WHEN p_kind = 'commit' THEN r.quantity ELSE 0 END,
                 reserved = i.reserved - r.quantity,
                 updated_at = p_at
            FROM req r
           WHERE i.product_id = r.product_id
          RETURNING i.product_id, r.quantity
        )
        INSERT INTO stock_movements
          (product_id, kind, on_hand_delta, reserved_delta, reason, order_id, created_at)
        SELECT product_id, p_kind, CASE WHEN p_kind = 'commit' THEN -quantity ELSE 0 END,
               -quantity, 'order', p_order_id, p_at
          FROM moved;
      END
      $$`;

export class SettleOnceAsReserved1763800056000 implements MigrationInterface {
  name = 'SettleOnceAsReserved1763800056000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE UNIQUE INDEX stock_movements_settled_once ON stock_movements (order_id, product_id)
        WHERE kind IN ('release', 'commit')`,
    );
    await q.query(settleStock(true));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(settleStock(false));
    await q.query(`DROP INDEX stock_movements_settled_once`);
  }
}
