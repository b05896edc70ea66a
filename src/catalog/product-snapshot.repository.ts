import { Injectable } from '@nestjs/common';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../database/column-transformers';
import { TransactionHost } from '../database/transaction-host';

export interface ProductSnapshot {
  id: string;
  sku: string;
  name: string;
  priceAmount: number;
  currency: string;
  active: boolean;
}

/** Reads what an order line snapshots from the catalog: sku, name and the current price. */
@Injectable()
export class ProductSnapshotRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Raw SQL: hot path of bench:flash-sale (the checkout's price snapshot, one round trip per
   * order; see docs/BENCHMARKS.md). Mapped with the products entity's column transformers.
   */
  async findByIds(ids: string[]): Promise<ProductSnapshot[]> {
    const rows = await this.tx.query<{
      id: string;
      sku: string;
      name: string;
      price_amount: string;
      currency: string;
      active: boolean;
    }>(
      `SELECT id, sku, name, price_amount, currency, active FROM products WHERE id = ANY($1::uuid[])`,
      [ids],
    );
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
