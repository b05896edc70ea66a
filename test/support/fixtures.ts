import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { inTransaction } from './transactions';

/**
 * Direct-SQL fixtures for order tests, independent of the catalog API: a product with its
 * inventory row and the 'initial' ledger row, exactly as product creation writes them.
 */
export async function insertProduct(
  pool: Pool,
  opts: { stock: number; priceAmount?: number; currency?: string; active?: boolean; sku?: string },
): Promise<string> {
  const id = randomUUID();
  await inTransaction(pool, async (client) => {
    await client.query(
      `INSERT INTO products (id, sku, name, description, price_amount, currency, active)
       VALUES ($1, $2, $3, 'fixture', $4, $5, $6)`,
      [
        id,
        opts.sku ?? `SKU-${id.slice(0, 8)}`,
        `Product ${id.slice(0, 8)}`,
        opts.priceAmount ?? 24900,
        opts.currency ?? 'INR',
        opts.active ?? true,
      ],
    );
    await client.query(
      `INSERT INTO inventory_items (product_id, on_hand, reserved) VALUES ($1, $2, 0)`,
      [id, opts.stock],
    );
    await client.query(
      `INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason)
       VALUES ($1, 'initial', $2, 0, 'fixture')`,
      [id, opts.stock],
    );
  });
  return id;
}

export interface StockRow {
  onHand: number;
  reserved: number;
}

export async function stockOf(pool: Pool, productId: string): Promise<StockRow> {
  const { rows } = await pool.query(
    `SELECT on_hand AS "onHand", reserved FROM inventory_items WHERE product_id = $1`,
    [productId],
  );
  return rows[0];
}

/**
 * The stock invariants every concurrency test ends with: the ledger explains every number,
 * reserved equals what live orders hold, and nothing is negative or oversold.
 */
export async function assertStockInvariants(pool: Pool, productIds: string[]): Promise<void> {
  for (const productId of productIds) {
    const stock = await stockOf(pool, productId);
    const ledger = (
      await pool.query(
        `SELECT coalesce(sum(on_hand_delta), 0)::int AS "onHand",
                coalesce(sum(reserved_delta), 0)::int AS reserved
           FROM stock_movements WHERE product_id = $1`,
        [productId],
      )
    ).rows[0];
    const held = (
      await pool.query(
        `SELECT coalesce(sum(i.quantity), 0)::int AS q
           FROM order_items i JOIN orders o ON o.id = i.order_id
          WHERE i.product_id = $1 AND o.status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')`,
        [productId],
      )
    ).rows[0].q;
    expect({ productId, ...stock }).toEqual({ productId, ...ledger });
    expect(stock.reserved).toBe(held);
    expect(stock.onHand - stock.reserved).toBeGreaterThanOrEqual(0);
  }
}

export const newKey = (): string => randomUUID();
