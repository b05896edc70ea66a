import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import type { ProductSort } from './dto/catalog.dto';
import { SORTS } from './product-sorts';

export interface ProductRow {
  id: string;
  sku: string;
  name: string;
  description: string;
  priceAmount: string;
  currency: string;
  categoryId: string | null;
  imageUrl: string | null;
  active: boolean;
  available: number;
  ratingSum: number;
  ratingCount: number;
  createdAt: Date;
  updatedAt: Date;
  sortKey?: string | number | Date;
}

export interface NewProduct {
  id: string;
  sku: string;
  name: string;
  description: string;
  priceAmount: number;
  currency: string;
  categoryId: string | null;
  initialStock: number;
  actorId: string;
  at: Date;
}

export interface ProductPatch {
  name?: string;
  description?: string;
  priceAmount?: number;
  categoryId?: string;
  active?: boolean;
}

export interface PageQuery {
  sort: ProductSort;
  limit: number;
  categoryId?: string;
  q?: string;
  asOf: Date;
  maxUnits: number;
  after: { key: string | number; id: string } | null;
}

const COLUMNS = `p.id, p.sku, p.name, p.description, p.price_amount AS "priceAmount",
  p.currency, p.category_id AS "categoryId", p.image_url AS "imageUrl", p.active,
  (i.on_hand - i.reserved) AS available, p.rating_sum AS "ratingSum",
  p.rating_count AS "ratingCount", p.created_at AS "createdAt", p.updated_at AS "updatedAt"`;

/** The only place that builds SQL for products and categories. */
@Injectable()
export class ProductRepository {
  constructor(private readonly tx: TransactionHost) {}

  /** Product, its inventory row and the 'initial' ledger row, in one statement. */
  async insert(p: NewProduct): Promise<void> {
    await this.tx.query(
      `WITH prod AS (
         INSERT INTO products (id, sku, name, description, price_amount, currency, category_id,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $10) RETURNING id
       ), inv AS (
         INSERT INTO inventory_items (product_id, on_hand, reserved, updated_at)
         SELECT id, $8, 0, $10 FROM prod
       )
       INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason, actor_id, created_at)
       SELECT id, 'initial', $8, 0, 'product created', $9, $10 FROM prod`,
      [p.id, p.sku, p.name, p.description, p.priceAmount, p.currency, p.categoryId, p.initialStock, p.actorId, p.at],
    );
  }

  async update(id: string, patch: ProductPatch, at: Date): Promise<boolean> {
    const rows = await this.tx.query(
      `UPDATE products SET
         name = coalesce($2, name), description = coalesce($3, description),
         price_amount = coalesce($4, price_amount), category_id = coalesce($5, category_id),
         active = coalesce($6, active), updated_at = $7
       WHERE id = $1 RETURNING id`,
      [id, patch.name ?? null, patch.description ?? null, patch.priceAmount ?? null, patch.categoryId ?? null, patch.active ?? null, at],
    );
    return rows.length > 0;
  }

  async findById(id: string, opts: { activeOnly: boolean }): Promise<ProductRow | null> {
    const rows: ProductRow[] = await this.tx.query(
      `SELECT ${COLUMNS} FROM products p JOIN inventory_items i ON i.product_id = p.id
        WHERE p.id = $1 AND (p.active OR NOT $2)`,
      [id, opts.activeOnly],
    );
    return rows[0] ?? null;
  }

  /** The largest units_sold among active products (the popularity normalizer). */
  async maxUnitsSold(): Promise<number> {
    const rows: { m: number }[] = await this.tx.query(
      `SELECT coalesce(max(units_sold), 0)::int AS m FROM products WHERE active`,
    );
    return rows[0].m;
  }

  /** One keyset page of active products for a sort; rows carry their sort key. */
  async page(query: PageQuery): Promise<ProductRow[]> {
    const spec = SORTS[query.sort];
    const params: unknown[] = [];
    const bind = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    // bind the relevance inputs only when the sort key uses them
    let key = spec.key;
    for (const [token, value] of [
      ['$maxUnits', query.maxUnits],
      ['$asOf', query.asOf],
      ['$q', query.q ?? null],
    ] as const) {
      if (key.includes(token)) key = key.split(token).join(bind(value));
    }
    const where = ['p.active'];
    if (query.categoryId) where.push(`p.category_id = ${bind(query.categoryId)}`);
    if (query.q) where.push(`p.search @@ websearch_to_tsquery('simple', ${bind(query.q)})`);
    const dir = spec.descending ? 'DESC' : 'ASC';
    if (query.after) {
      const cmp = spec.descending ? '<' : '>';
      const cursorKey = spec.keyType === 'timestamp' ? `${bind(query.after.key)}::timestamptz` : bind(query.after.key);
      where.push(`(${key}, p.id) ${cmp} (${cursorKey}, ${bind(query.after.id)}::uuid)`);
    }
    return this.tx.query(
      `SELECT ${COLUMNS}, ${spec.keyType === 'timestamp' ? `(${key})::text` : key} AS "sortKey"
         FROM products p JOIN inventory_items i ON i.product_id = p.id
        WHERE ${where.join(' AND ')}
        ORDER BY ${key} ${dir}, p.id ${dir}
        LIMIT ${bind(query.limit)}`,
      params,
    );
  }

  async insertCategory(c: { id: string; name: string; slug: string }): Promise<boolean> {
    const rows = await this.tx.query(
      `INSERT INTO categories (id, name, slug) VALUES ($1, $2, $3)
       ON CONFLICT (slug) DO NOTHING RETURNING id`,
      [c.id, c.name, c.slug],
    );
    return rows.length > 0;
  }

  async categories(): Promise<{ id: string; name: string; slug: string }[]> {
    return this.tx.query(`SELECT id, name, slug FROM categories ORDER BY name, id`);
  }

  async categoryExists(id: string): Promise<boolean> {
    return (await this.tx.query(`SELECT 1 FROM categories WHERE id = $1`, [id])).length > 0;
  }

  async skuExists(sku: string): Promise<boolean> {
    return (await this.tx.query(`SELECT 1 FROM products WHERE sku = $1`, [sku])).length > 0;
  }
}
