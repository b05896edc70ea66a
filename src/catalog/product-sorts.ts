import type { ProductSort } from './dto/catalog.dto';

/**
 * Keyset pagination per sort: the SQL sort key, its direction, and how the cursor compares.
 * Pure data; the repository turns it into ORDER BY and WHERE (key, id) < / > (cursor).
 *
 * relevance = 0.5·popularity_norm + 0.3·rating_norm + 0.2·max(0, 1 − age/30 days)
 *             (+ ts_rank of the search query when `q` is set)
 * where popularity_norm = units_sold / max(units_sold) over the active catalog and
 * rating_norm = average rating / 5. The reference time and the maximum are fixed by the first
 * page and carried in the cursor, so the age term and the normalisation do not move between
 * pages. Sales, ratings and prices still do: a product whose key crosses the cursor between two
 * page requests (paid orders for `popular`, a review for `relevance`, a price change) can be
 * skipped or listed twice — keyset paging over live data, accepted for a shop's catalog.
 */
export interface SortSpec {
  key: string;
  descending: boolean;
  /**
   * What the cursor's key holds (checked before any SQL): a float score, a bigint column
   * (price), an integer one (units sold) or a timestamp (PostgreSQL text, microseconds intact).
   */
  keyType: 'number' | 'integer' | 'int4' | 'timestamp';
}

const RELEVANCE_SCORE = `(
  0.5 * (p.units_sold::float8 / greatest($maxUnits::float8, 1))
  + 0.3 * (CASE WHEN p.rating_count = 0 THEN 0 ELSE p.rating_sum::float8 / p.rating_count / 5 END)
  + 0.2 * greatest(0, 1 - extract(epoch FROM ($asOf::timestamptz - p.created_at)) / 2592000)
  + CASE WHEN $q::text IS NULL THEN 0 ELSE ts_rank(p.search, websearch_to_tsquery('simple', normalize($q::text, NFKC))) END
)`;

export const SORTS: Record<ProductSort, SortSpec> = {
  relevance: { key: RELEVANCE_SCORE, descending: true, keyType: 'number' },
  newest: { key: 'p.created_at', descending: true, keyType: 'timestamp' },
  price_asc: { key: 'p.price_amount', descending: false, keyType: 'integer' },
  price_desc: { key: 'p.price_amount', descending: true, keyType: 'integer' },
  popular: { key: 'p.units_sold', descending: true, keyType: 'int4' },
};
