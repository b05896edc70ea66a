/**
 * The relevance ranking, as plain functions. The SQL expression the listing sorts by
 * (product-sorts.ts) is built from the same constants, and the e2e ranking test orders its
 * constructed data set with `relevanceScore()` to check the two agree.
 *
 *   relevance = 0.5 · popularity + 0.3 · rating + 0.2 · recency  (+ text rank when searching)
 *
 * - popularity = units sold in paid orders / units sold by the top seller (0..1)
 * - rating     = average rating / 5 (0 without reviews)
 * - recency    = max(0, 1 − age / 30 days), capped at 1 (a product created after the reference
 *                time counts as brand new)
 * - text rank  = PostgreSQL ts_rank of the search vector (name weighted A, description B)
 *
 * The reference time and the top seller's count are fixed by a listing's first page and carried
 * in its cursor, so a product's score is the same on every page of one listing.
 */
export const RANK_WEIGHTS = { popularity: 0.5, rating: 0.3, recency: 0.2 } as const;
export const RECENCY_WINDOW_SECONDS = 30 * 24 * 60 * 60;
export const MAX_RATING = 5;

export interface RankInputs {
  unitsSold: number;
  /** The largest units_sold in the active catalog (the normalizer). */
  maxUnitsSold: number;
  ratingSum: number;
  ratingCount: number;
  createdAt: Date;
  /** The listing's reference time. */
  asOf: Date;
  /** ts_rank of the search query, when there is one. */
  textRank?: number;
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

export function popularityNorm(unitsSold: number, maxUnitsSold: number): number {
  return clamp01(unitsSold / Math.max(maxUnitsSold, 1));
}

export function ratingNorm(ratingSum: number, ratingCount: number): number {
  return ratingCount === 0 ? 0 : clamp01(ratingSum / ratingCount / MAX_RATING);
}

export function recencyNorm(createdAt: Date, asOf: Date): number {
  const ageSeconds = (asOf.getTime() - createdAt.getTime()) / 1000;
  return clamp01(1 - ageSeconds / RECENCY_WINDOW_SECONDS);
}

export function relevanceScore(i: RankInputs): number {
  return (
    RANK_WEIGHTS.popularity * popularityNorm(i.unitsSold, i.maxUnitsSold) +
    RANK_WEIGHTS.rating * ratingNorm(i.ratingSum, i.ratingCount) +
    RANK_WEIGHTS.recency * recencyNorm(i.createdAt, i.asOf) +
    (i.textRank ?? 0)
  );
}

/** Average rating for display: two decimals, null without reviews. */
export function ratingAverage(ratingSum: number, ratingCount: number): number | null {
  return ratingCount === 0 ? null : Math.round((ratingSum / ratingCount) * 100) / 100;
}
