import { searchText } from './search-text';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../database/column-transformers';
import { TransactionHost } from '../database/transaction-host';
import type { ProductSort } from './dto/catalog.dto';
import { CategoryEntity } from './entities/category.entity';
import { ProductEntity } from './entities/product.entity';
import { SORTS } from './product-sorts';

/** A product with its availability (on hand − reserved), as the catalog's reads show it. */
export interface ProductView {
  id: string;
  sku: string;
  name: string;
  description: string;
  priceAmount: number;
  currency: string;
  categoryId: string | null;
  imageUrl: string | null;
  active: boolean;
  available: number;
  ratingSum: number;
  ratingCount: number;
  createdAt: Date;
  updatedAt: Date;
}

/** A product with the storage keys of its ready images, oldest first. */
export interface ProductDetailView extends ProductView {
  imageKeys: string[];
}

/** A listing row: the product and its sort key (the next page's cursor). */
/** What a listing shows of a product: its view without the description (up to 10,000 characters). */
export type ProductSummaryView = Omit<ProductView, 'description'>;

interface ProductPageRow extends ProductSummaryView {
  sortKey: string | number;
}

interface NewProduct {
  id: string;
  sku: string;
  name: string;
  description: string;
  priceAmount: number;
  currency: string;
  categoryId: string | null;
  at: Date;
}

interface ProductPatch {
  name?: string;
  description?: string;
  priceAmount?: number;
  /** Written with the amount: a product priced before a SHOP_CURRENCY change is repriced into the new one. */
  currency?: string;
  /** `null` takes the product out of its category. */
  categoryId?: string | null;
  active?: boolean;
}

interface PageQuery {
  sort: ProductSort;
  limit: number;
  categoryId?: string;
  q?: string;
  asOf: Date;
  maxUnits: number;
  after: { key: string | number; id: string } | null;
}

interface Category {
  id: string;
  name: string;
  slug: string;
}

/** A product loaded with its inventory row (`inventory` joined), as a view. */
export function productView(p: ProductEntity): ProductView {
  if (!p.inventory) throw new Error(`product ${p.id} was loaded without its inventory row`);
  return {
    id: p.id,
    sku: p.sku,
    name: p.name,
    description: p.description,
    priceAmount: p.priceAmount,
    currency: p.currency,
    categoryId: p.categoryId,
    imageUrl: p.imageUrl,
    active: p.active,
    available: p.inventory.onHand - p.inventory.reserved,
    ratingSum: p.ratingSum,
    ratingCount: p.ratingCount,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  };
}

/**
 * A ProductView selected as plain columns (products `p` joined with inventory_items `i`): the
 * listing's SQL and the product detail's query builder select these, and fromViewRow maps them.
 */
const VIEW_COLUMNS = [
  'p.id AS id',
  'p.sku AS sku',
  'p.name AS name',
  'p.description AS description',
  'p.price_amount AS "priceAmount"',
  'p.currency AS currency',
  'p.category_id AS "categoryId"',
  'p.image_url AS "imageUrl"',
  'p.active AS active',
  '(i.on_hand - i.reserved) AS available',
  'p.rating_sum AS "ratingSum"',
  'p.rating_count AS "ratingCount"',
  'p.created_at AS "createdAt"',
  'p.updated_at AS "updatedAt"',
];
/** A listing's: no description, which the summary does not show. */
const PAGE_COLUMNS = VIEW_COLUMNS.filter((c) => !c.startsWith('p.description ')).join(', ');

/** A row of VIEW_COLUMNS through the entity's own column transformers (bigint → number, char(3) → code). */
/**
 * On sale, as the public catalog shows it: active and priced in the shop's currency (`currency`)
 * — after a SHOP_CURRENCY change, a product not yet repriced is neither listed nor recommended,
 * as a cart and a checkout refuse it. A query-builder condition on `alias` and its parameters.
 */
export function onSale(alias: string, currency: string): [string, { shopCurrency: string }] {
  return [`${alias}.active AND ${alias}.currency = :shopCurrency`, { shopCurrency: currency }];
}

function fromViewRow<R extends { priceAmount: unknown; currency: unknown }>(
  r: R,
): Omit<R, 'priceAmount' | 'currency'> & { priceAmount: number; currency: string } {
  return {
    ...r,
    priceAmount: BIGINT_NUMBER.from(r.priceAmount) as number,
    currency: CURRENCY_CODE.from(r.currency) as string,
  };
}

/** PostgreSQL's `integer` ceiling: `products.units_sold` saturates there. */
const INT4_MAX = 2_147_483_647;

/**
 * The `products` and `categories` tables' repository: every write to them goes through here
 * (the inventory counts sales through addUnitsSold, reviews their ratings through addRating).
 */
/**
 * The key SKUs are told apart by — products_sku_key's expression (migrations/…-SkuCaseFolded.ts):
 * Unicode's case mapping (ICU's, whatever the database's locale), lower then upper, so every
 * case of a letter meets in one (ẞ and ß → SS).
 */
const skuKey = (value: string) => `upper(lower(normalize(${value}, NFKC) COLLATE "und-x-icu"))`;

/**
 * A product (`p`) taken off sale since an order placed at `placedEpoch` (an SQL expression):
 * off sale now, or back on sale since (ProductRepository#offSaleSince).
 */
const offSaleSinceSql = (placedEpoch: string): string =>
  `(NOT p.active OR p.on_sale_epoch > ${placedEpoch})`;

@Injectable()
export class ProductRepository {
  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The product row only: its stock is the inventory's (InventoryService.createItem). */
  async insert(p: NewProduct): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(ProductEntity).insert({
        id: p.id,
        sku: p.sku,
        name: p.name,
        description: p.description,
        priceAmount: p.priceAmount,
        currency: p.currency,
        categoryId: p.categoryId,
        createdAt: p.at,
        updatedAt: p.at,
      }),
    );
  }

  /**
   * The product's row locked as its UPDATE will lock it (FOR NO KEY UPDATE: order lines' foreign
   * keys still take theirs), with what an order line copies of it — so the caller can tell whether
   * its change alters that. Null when there is no such product. Call in the updating transaction.
   */
  async lockOrderTerms(
    id: string,
  ): Promise<{ name: string; priceAmount: number; currency: string } | null> {
    const row = await this.tx.withManager((m) =>
      m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        .select(['p.name AS name', 'p.price_amount AS "priceAmount"', 'p.currency AS currency'])
        .where('p.id = :id', { id })
        .setLock('for_no_key_update')
        .getRawOne<{ name: string; priceAmount: string; currency: string }>(),
    );
    return row ? { ...row, priceAmount: Number(row.priceAmount) } : null;
  }

  /** Changes the fields given (undefined ones stay); false when there is no such product. */
  async update(id: string, patch: ProductPatch, at: Date): Promise<boolean> {
    const changes: QueryDeepPartialEntity<ProductEntity> = { updatedAt: at };
    if (patch.name !== undefined) changes.name = patch.name;
    if (patch.description !== undefined) changes.description = patch.description;
    if (patch.priceAmount !== undefined) changes.priceAmount = patch.priceAmount;
    if (patch.currency !== undefined) changes.currency = patch.currency;
    if (patch.categoryId !== undefined) changes.categoryId = patch.categoryId;
    if (patch.active !== undefined) changes.active = patch.active;
    const result = await this.tx.withManager((m) =>
      m.getRepository(ProductEntity).update({ id }, changes),
    );
    return (result.affected ?? 0) > 0;
  }

  /**
   * Raw columns rather than hydrated entities: an uncached product detail costs a third less CPU
   * so (bench:catalog's uncached detail, docs/BENCHMARKS.md "Issue 13 … before / after").
   */
  async findById(id: string, opts: { activeOnly: boolean }): Promise<ProductView | null> {
    const row = await this.oneView<ProductView & { priceAmount: string }>(id, opts, VIEW_COLUMNS);
    return row ? fromViewRow(row) : null;
  }

  /** One product's row of `columns` (VIEW_COLUMNS and more), with its inventory joined. */
  private oneView<R>(
    id: string,
    opts: { activeOnly: boolean },
    columns: string[],
  ): Promise<R | undefined> {
    return this.tx.withManager((m) => {
      const query = m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        .innerJoin('p.inventory', 'i')
        .select(columns)
        .where('p.id = :id', { id });
      if (opts.activeOnly) query.andWhere(...onSale('p', this.config.currency));
      return query.getRawOne<R>();
    });
  }

  /**
   * The product with the storage keys of its ready images (`product_images`), in the order they
   * became ready: what a product's detail shows.
   */
  async findDetail(id: string, opts: { activeOnly: boolean }): Promise<ProductDetailView | null> {
    const row = await this.oneView<ProductDetailView & { priceAmount: string }>(id, opts, [
      ...VIEW_COLUMNS,
      `ARRAY(SELECT pi.storage_key FROM product_images pi
              WHERE pi.product_id = p.id AND pi.status = 'ready' ORDER BY pi.ready_at, pi.id) AS "imageKeys"`,
    ]);
    return row ? { ...fromViewRow(row), imageKeys: row.imageKeys } : null;
  }

  /** On sale and priced in `currency` (the shop's): one a cart takes and a checkout sells. */
  async isBuyable(id: string, currency: string): Promise<boolean> {
    return this.tx.withManager((m) =>
      m.getRepository(ProductEntity).existsBy({ id, active: true, currency }),
    );
  }

  /**
   * Those of `ids` taken off sale since an order placed at `placedEpoch` (its draw of
   * `sale_epochs`; null: before there were any): off sale now, or back on sale since (an order
   * placed before it went back on sale was placed before it went off: none can be placed while it
   * is off). Put back on sale with its price mended, a product does not make the orders placed at
   * the mistaken price payable again.
   */
  async offSaleSince(ids: string[], placedEpoch: string | null): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        .select('p.id', 'id')
        .where('p.id IN (:...ids)', { ids })
        .andWhere(offSaleSinceSql(':placedEpoch::bigint'), { placedEpoch: placedEpoch ?? '0' })
        .getRawMany<{ id: string }>(),
    );
    return rows.map((r) => r.id);
  }

  /**
   * Whether the order, holding its reservation with no payment begun (INVENTORY_RESERVED), has a
   * product taken off sale since it was placed (as offSaleSince): one statement, read again once
   * if its connection dies under it (a read: run twice, it changes nothing).
   */
  async reservedOrderWithdrawn(orderId: string): Promise<boolean> {
    // raw SQL: one EXISTS over the order, its lines and their products (per expiry it read the
    // order with its lines and history, then the products)
    const [row] = await this.tx.queryRerunnable<{ withdrawn: boolean }>(
      `SELECT EXISTS (
         SELECT 1 FROM orders o
           JOIN order_items i ON i.order_id = o.id
           JOIN products p ON p.id = i.product_id
          WHERE o.id = $1 AND o.status = 'INVENTORY_RESERVED'
            AND ${offSaleSinceSql('COALESCE(o.placed_epoch, 0)')}) AS withdrawn`,
      [orderId],
    );
    return row.withdrawn;
  }

  /** How many products and categories there are whose SKU (as skuKey) or slug is not listed. */
  async countOutside(
    skus: string[],
    slugs: string[],
  ): Promise<{ products: number; categories: number }> {
    const [row] = await this.tx.query<{ products: number; categories: number }>(
      `SELECT (SELECT count(*) FROM products
                WHERE ${skuKey('sku')} <> ALL (SELECT ${skuKey('s')} FROM unnest($1::text[]) AS s))::int AS products,
              (SELECT count(*) FROM categories WHERE slug <> ALL ($2::text[]))::int AS categories`,
      [skus, slugs],
    );
    return row;
  }

  /** Whether a product has this SKU, in any letter case or Unicode form (products_sku_key's key). */
  async skuExists(sku: string): Promise<boolean> {
    return this.tx.withManager((m) =>
      m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        .where(`${skuKey('p.sku')} = ${skuKey(':sku')}`, { sku })
        .getExists(),
    );
  }

  /** The largest units_sold among products on sale (the popularity normalizer: over what is listed). */
  async maxUnitsSold(): Promise<number> {
    const row = await this.tx.withManager((m) =>
      m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        .select('coalesce(max(p.units_sold), 0)::int', 'm')
        .where(...onSale('p', this.config.currency))
        .getRawOne<{ m: number }>(),
    );
    return row?.m ?? 0;
  }

  /**
   * One keyset page of active products for a sort; rows carry their sort key.
   *
   * Raw SQL: the listing and search ranking measured by bench:catalog (docs/BENCHMARKS.md) —
   * the relevance score (product-sorts.ts) and the keyset comparison are expressions the query
   * builder would only pass through, and each cache miss pays for entity hydration otherwise.
   */
  async page(query: PageQuery): Promise<ProductPageRow[]> {
    const spec = SORTS[query.sort];
    const params: unknown[] = [];
    const bind = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    // the search text as websearch_to_tsquery can always take it (searchText)
    const q = query.q ? searchText(query.q) : null;
    // bind the relevance inputs only when the sort key uses them
    let key = spec.key;
    for (const [token, value] of [
      ['$maxUnits', query.maxUnits],
      ['$asOf', query.asOf],
      ['$q', q],
    ] as const) {
      if (key.includes(token)) key = key.split(token).join(bind(value));
    }
    const where = ['p.active', `p.currency = ${bind(this.config.currency)}`]; // on sale (onSale, in raw SQL)
    if (query.categoryId) where.push(`p.category_id = ${bind(query.categoryId)}`);
    // the query's words in the NFKC form the vector holds (1763800028000-SearchNormalized.ts)
    if (q) where.push(`p.search @@ websearch_to_tsquery('simple', normalize(${bind(q)}, NFKC))`);
    const dir = spec.descending ? 'DESC' : 'ASC';
    if (query.after) {
      const cmp = spec.descending ? '<' : '>';
      const cursorKey =
        spec.keyType === 'timestamp'
          ? `${bind(query.after.key)}::timestamptz`
          : bind(query.after.key);
      where.push(`(${key}, p.id) ${cmp} (${cursorKey}, ${bind(query.after.id)}::uuid)`);
    }
    const rows = await this.tx.query<ProductPageRow & { priceAmount: string }>(
      `SELECT ${PAGE_COLUMNS}, ${spec.keyType === 'timestamp' ? `(${key})::text` : key} AS "sortKey"
         FROM products p JOIN inventory_items i ON i.product_id = p.id
        WHERE ${where.join(' AND ')}
        ORDER BY ${key} ${dir}, p.id ${dir}
        LIMIT ${bind(query.limit)}`,
      params,
    );
    return rows.map(fromViewRow);
  }

  /**
   * Counts paid units towards each product's popularity (`sign` -1 takes a refunded sale back,
   * never below 0; never above the column's 2^31 - 1 either — past it the UPDATE failed, and with
   * it the transaction that records a payment: a charged customer's order stayed unconfirmed,
   * retried for ever). Atomic increments under the row lock: concurrent sales never lose one.
   */
  async addUnitsSold(
    lines: { productId: string; quantity: number }[],
    sign: 1 | -1,
  ): Promise<void> {
    await this.tx.withManager(async (m) => {
      for (const line of lines) {
        await m
          .createQueryBuilder()
          .update(ProductEntity)
          .set({
            unitsSold: () => `least(greatest(units_sold::bigint + :delta, 0), ${INT4_MAX})::int`,
          })
          .where('id = :id', { id: line.productId, delta: sign * line.quantity })
          .execute();
      }
    });
  }

  /** Adds a review's rating to the product's counters (atomic increments). */
  async addRating(productId: string, rating: number): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(ProductEntity)
        .set({ ratingSum: () => 'rating_sum + :rating', ratingCount: () => 'rating_count + 1' })
        .where('id = :id', { id: productId, rating })
        .execute(),
    );
  }

  /**
   * Makes the uploaded image `key` the product's main image unless it has one already (its
   * storage key: the URL is built when read, from the STORAGE_BASE_URL of then).
   */
  async setImageIfNone(productId: string, key: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(ProductEntity)
        .set({ imageUrl: key, updatedAt: at })
        .where('id = :id', { id: productId })
        .andWhere('image_url IS NULL')
        .execute(),
    );
  }

  /** Makes `to` the product's main image where it was `from` (an image's key moved). */
  async replaceImage(productId: string, from: string, to: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(ProductEntity)
        .set({ imageUrl: to, updatedAt: at })
        .where('id = :id', { id: productId })
        .andWhere('image_url = :from', { from })
        .execute(),
    );
  }

  /** False when the slug is taken (nothing is written then). */
  async insertCategory(c: Category): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .insert()
        .into(CategoryEntity)
        .values({ ...c }) // (a copy: the insert writes what the database generated back into it)
        .orIgnore()
        .returning(['id'])
        .execute(),
    );
    return (result.raw as unknown[]).length > 0;
  }

  async categories(): Promise<Category[]> {
    const rows = await this.tx.withManager((m) =>
      m.getRepository(CategoryEntity).find({ order: { name: 'ASC', id: 'ASC' } }),
    );
    return rows.map(({ id, name, slug }) => ({ id, name, slug }));
  }

  async categoryExists(id: string): Promise<boolean> {
    return this.tx.withManager((m) => m.getRepository(CategoryEntity).existsBy({ id }));
  }
}
