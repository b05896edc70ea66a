import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * settle_stock: an order's reservation released (cancel, expiry, failed payment) or committed
 * (payment: the units leave the shop), as one statement sent in the message that carries the
 * transaction's COMMIT (StockReservationRepository.settleOnCommit) — the inventory row locks are
 * then held only while the server runs it and commits, as the checkout's reserve_stock holds
 * them. It used to lock the rows with a statement of their own and update them one round trip
 * per line, holding the hot product's row for the rest of the transaction. Written by the
 * inventory folder.
 */
export class SettleStock1763800029000 implements MigrationInterface {
  name = 'SettleStock1763800029000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION settle_stock(p_kind text, p_order_id uuid, p_product_ids uuid[],
                                   p_quantities int[], p_at timestamptz)
      RETURNS void
      LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        IF p_kind NOT IN ('release', 'commit') THEN
          RAISE EXCEPTION 'settle_stock: unknown kind %', p_kind USING ERRCODE = '22023';
        END IF;
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
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION settle_stock(text, uuid, uuid[], int[], timestamptz)`);
  }
}
