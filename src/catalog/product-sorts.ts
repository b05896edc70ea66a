import type { ProductSort } from './dto/catalog.dto';
import { MAX_RATING, RANK_WEIGHTS, RECENCY_WINDOW_SECONDS } from './ranking';

/**
 * Keyset pagination per sort, as data: what rows are ordered by, how a row's sort key leaves
 * the database as a JSON-safe number (it goes into the cursor), and how a cursor's key is turned
 * back into something comparable. The repository turns a spec into
 * `ORDER BY <orderBy> <dir>, p.id <dir>` and `WHERE (<orderBy>, p.id) < / > (<keyIn>, <id>)`.
 * No OFFSET anywhere.
 *
 * Every key is a number:
 * - relevance: the score (float8; PostgreSQL prints the shortest exact form, JSON keeps it);
 * - newest: created_at in integer microseconds since the epoch (exact, unlike a JS Date);
 * - price: minor units (bigint, a safe integer: prices are capped far below 2^53);
 * - popular: units sold.
 *
 * Relevance is computed per query, not materialized: `$asOf` (the reference time) and
 * `$maxUnits` (the top seller's units) are fixed by the first page and carried in the cursor, so
 * a product's score does not drift between pages. See ranking.ts for the formula.
 */
export interface SortSpec {
  orderBy: string;
  descending: boolean;
  /** SQL for the row's cursor key (a number). */
  keyOut: string;
  /** SQL turning the bound cursor key (`param`) back into the orderBy domain. */
  keyIn: (param: string) => string;
  /** Whether cursor keys must be integers (all but relevance). */
  integerKey: boolean;
}

/** Tokens the repository binds: `$maxUnits`, `$asOf`, `$q`. */
export const RELEVANCE_SQL = `(
  ${RANK_WEIGHTS.popularity} * least(1, p.units_sold::float8 / greatest($maxUnits::float8, 1))
  + ${RANK_WEIGHTS.rating} * (CASE WHEN p.rating_count = 0 THEN 0
      ELSE least(1, p.rating_sum::float8 / p.rating_count / ${MAX_RATING}) END)
  + ${RANK_WEIGHTS.recency} * least(1, greatest(0,
      1 - extract(epoch FROM ($asOf::timestamptz - p.created_at))::float8 / ${RECENCY_WINDOW_SECONDS}))
  + CASE WHEN $q::text IS NULL THEN 0
      ELSE ts_rank(p.search, websearch_to_tsquery('english', $q::text)) END
)`;

export const SORTS: Record<ProductSort, SortSpec> = {
  relevance: {
    orderBy: RELEVANCE_SQL,
    descending: true,
    keyOut: RELEVANCE_SQL,
    keyIn: (param) => `${param}::float8`,
    integerKey: false,
  },
  newest: {
    orderBy: 'p.created_at',
    descending: true,
    keyOut: `(extract(epoch FROM p.created_at) * 1000000)::bigint`,
    keyIn: (param) => `('epoch'::timestamptz + ${param}::bigint * interval '1 microsecond')`,
    integerKey: true,
  },
  price_asc: {
    orderBy: 'p.price_amount',
    descending: false,
    keyOut: 'p.price_amount',
    keyIn: (param) => `${param}::bigint`,
    integerKey: true,
  },
  price_desc: {
    orderBy: 'p.price_amount',
    descending: true,
    keyOut: 'p.price_amount',
    keyIn: (param) => `${param}::bigint`,
    integerKey: true,
  },
  popular: {
    orderBy: 'p.units_sold',
    descending: true,
    keyOut: 'p.units_sold',
    keyIn: (param) => `${param}::integer`,
    integerKey: true,
  },
};
