import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../common/money/safe-int';

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

  async findByIds(ids: string[]): Promise<ProductSnapshot[]> {
    const rows: {
      id: string;
      sku: string;
      name: string;
      price_amount: string;
      currency: string;
      active: boolean;
    }[] = await this.tx.query(
      `SELECT id, sku, name, price_amount, currency, active FROM products WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    return rows.map((r) => ({
      id: r.id,
      sku: r.sku,
      name: r.name,
      priceAmount: toSafeInt(r.price_amount),
      currency: r.currency.trim(),
      active: r.active,
    }));
  }
}
