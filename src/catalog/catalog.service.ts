import { Injectable } from '@nestjs/common';
import { CursorCodec } from '../common/pagination/cursor';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import type { Payer } from './build-budget';
import { CatalogCache } from './catalog-cache';
import { catalogCacheKey } from './catalog-cache-key';
import { mapProduct, mapProductSummary } from './catalog.mapper';
import { CategoryDto, ListProductsDto, ProductPageDto } from './dto/catalog.dto';
import { ProductRepository } from './product.repository';
import { SORTS } from './product-sorts';
import { productNotFound } from './product-not-found';
import { ObjectStorage } from './object-storage';

interface Cursor extends Record<string, string | number> {
  k: string | number;
  i: string;
  t: string;
  m: number;
}

/**
 * What a page lists — sort, category, search text — which its cursor is bound to (CursorCodec):
 * a cursor made under one sort (its key a price) replayed under another (a popularity, or a price
 * in the other direction) would page from an arbitrary place, repeating or skipping products.
 */
const listingOf = (query: ListProductsDto): string =>
  JSON.stringify([query.sort, query.categoryId ?? null, query.q ?? null]);

/**
 * How long one statement of a listing's build may run (waits for locks included) before it is
 * cancelled and the read answers 503 with Retry-After. A search matching every product took
 * 180–430 ms on 20,000 products (BuildBudget); without a bound a costlier one — a larger catalog,
 * a slower disk — ran until the pool's silence limit (DATABASE_QUERY_TIMEOUT_MS, 60 s), with
 * parallel workers on more cores than the one its budget counted.
 */
export const CATALOG_BUILD_STATEMENT_MS = 3_000;

/** Public catalog reads, served through the cache as ready JSON. */
@Injectable()
export class CatalogService {
  constructor(
    private readonly products: ProductRepository,
    private readonly cache: CatalogCache,
    private readonly clock: Clock,
    private readonly storage: ObjectStorage,
    private readonly cursors: CursorCodec,
    private readonly tx: TransactionHost,
  ) {}

  /**
   * 404 PRODUCT_NOT_FOUND also for inactive products. `url` (path + query as requested) is
   * the cache key, so the cached-GET fast path (cached-reads.hook.ts) finds the same entry.
   */
  product(id: string, url: string): Promise<string> {
    return this.cache.getOrBuild(catalogCacheKey(url), async () => {
      const row = await this.products.findDetail(id, { activeOnly: true });
      if (!row) throw productNotFound();
      return mapProduct(row, (key) => this.storage.publicUrl(key));
    });
  }

  /** `payer` (the client, and its IPv6 /48) pays for the page's build, if it begins one (BuildBudget). */
  list(query: ListProductsDto, url: string, payer?: Payer): Promise<string> {
    return this.cache.getOrBuild(catalogCacheKey(url), () => this.page(query), payer);
  }

  categories(url: string): Promise<string> {
    return this.cache.getOrBuild(catalogCacheKey(url), async () => ({
      items: (await this.products.categories()) satisfies CategoryDto[],
    }));
  }

  /**
   * A listing's page: its statements bounded (CATALOG_BUILD_STATEMENT_MS, one core each), as a
   * search's terms are the client's to choose.
   */
  private page(query: ListProductsDto): Promise<ProductPageDto> {
    return this.tx.runBounded(CATALOG_BUILD_STATEMENT_MS, () => this.buildPage(query));
  }

  private async buildPage(query: ListProductsDto): Promise<ProductPageDto> {
    const spec = SORTS[query.sort];
    const listing = listingOf(query);
    const cursor = this.cursors.decode<Cursor>(
      query.cursor,
      { k: spec.keyType, i: 'uuid', t: 'timestamp', m: 'integer' },
      listing,
      'listing (sort, category or search)',
    );
    const asOf = cursor ? new Date(cursor.t) : this.clock.now();
    // (the best seller's units scale relevance only: the other sorts neither read nor page by it)
    const maxUnits = cursor
      ? cursor.m
      : query.sort === 'relevance'
        ? await this.products.maxUnitsSold()
        : 0;
    const rows = await this.products.page({
      sort: query.sort,
      limit: query.limit + 1,
      categoryId: query.categoryId,
      q: query.q,
      asOf,
      maxUnits,
      after: cursor ? { key: cursor.k, id: cursor.i } : null,
    });
    const items = rows.slice(0, query.limit);
    const last = items[items.length - 1];
    let nextCursor: string | null = null;
    if (rows.length > query.limit && last) {
      // timestamps travel as PostgreSQL text (microseconds intact), numbers as numbers
      const k = spec.keyType === 'timestamp' ? String(last.sortKey) : Number(last.sortKey);
      nextCursor = this.cursors.encode(
        {
          k,
          i: last.id,
          t: asOf.toISOString(),
          m: maxUnits,
        },
        listing,
      );
    }
    return {
      items: items.map((r) => mapProductSummary(r, (key) => this.storage.publicUrl(key))),
      nextCursor,
    };
  }
}
