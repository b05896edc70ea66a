import { Injectable } from '@nestjs/common';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../database/column-transformers';
import type { OpeningRead } from '../database/opening-reads';
import { TransactionHost } from '../database/transaction-host';

export interface ProductSnapshot {
  id: string;
  sku: string;
  name: string;
  priceAmount: number;
  currency: string;
  active: boolean;
}

interface SnapshotRow {
  id: string;
  sku: string;
  name: string;
  price_amount: string;
  currency: string;
  active: boolean;
}

const SNAPSHOT_SQL = `SELECT id, sku, name, price_amount, currency, active FROM products WHERE id = ANY($1::uuid[])`;
/** The same for the same products in any order. */
const snapshotKey = (ids: string[]) => `product-snapshot:${[...ids].sort().join(',')}`;

/** Reads what an order line snapshots from the catalog: sku, name and the current price. */
@Injectable()
export class ProductSnapshotRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * The price snapshot of these products as an opening read (OpeningRead): the checkout route
   * has it sent with its transaction's BEGIN, and findByIds() then takes its rows. `ids` must be
   * well-formed UUIDs (the statement casts them).
   */
  static openingRead(ids: string[]): OpeningRead {
    return { key: snapshotKey(ids), sql: SNAPSHOT_SQL, params: [ids] };
  }

  /**
   * Raw SQL: hot path of bench:flash-sale (the checkout's price snapshot; see docs/BENCHMARKS.md).
   * Taken from the transaction's opening read when the route sent it with BEGIN, else one round
   * trip. Mapped with the products entity's column transformers.
   */
  async findByIds(ids: string[]): Promise<ProductSnapshot[]> {
    const rows =
      this.tx.takeOpened<SnapshotRow>(snapshotKey(ids)) ??
      (await this.tx.query<SnapshotRow>(SNAPSHOT_SQL, [ids]));
    return rows.map((r) => ({
      id: r.id,
      sku: r.sku,
      name: r.name,
      priceAmount: BIGINT_NUMBER.from(r.price_amount) as number,
      currency: CURRENCY_CODE.from(r.currency) as string,
      active: r.active,
    }));
  }
}
