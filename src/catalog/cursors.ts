import { DomainError } from '../common/errors/domain-error';
import type { ProductSort } from './dto/catalog.dto';
import { SORTS } from './product-sorts';

/**
 * Opaque keyset cursors for catalog lists: base64url JSON of the last row's sort key and id.
 * Decoding validates everything that reaches SQL (types, UUID shape, integer keys, the sort the
 * cursor was made for), so a malformed or tampered cursor is a 400, never a database error.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Date's own range, in milliseconds. */
const MAX_TIME_MS = 8.64e15;

export interface ProductCursor {
  sort: ProductSort;
  /** The last row's sort key (see SortSpec.keyOut). */
  key: number;
  id: string;
  /** The listing's reference time, epoch milliseconds (relevance). */
  asOf: number;
  /** The top seller's units sold when the listing started (relevance). */
  maxUnits: number;
}

export interface ReviewCursor {
  /** created_at of the last review, integer microseconds since the epoch. */
  at: number;
  id: string;
}

function encode(value: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function malformed(): DomainError {
  return new DomainError('VALIDATION_FAILED', 'The cursor is malformed.', {
    errors: [{ field: 'cursor', message: 'cursor is malformed' }],
  });
}

function parse(raw: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw malformed();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw malformed();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed();
  return value as Record<string, unknown>;
}

const isUuid = (v: unknown): v is string => typeof v === 'string' && UUID.test(v);
const isSafeInt = (v: unknown, min: number, max: number): v is number =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;

export function encodeProductCursor(c: ProductCursor): string {
  return encode({ s: c.sort, k: c.key, i: c.id, t: c.asOf, m: c.maxUnits });
}

/** The cursor for `sort`, or null when none was given; 400 VALIDATION_FAILED if malformed. */
export function decodeProductCursor(raw: string | undefined, sort: ProductSort): ProductCursor | null {
  if (raw === undefined) return null;
  const v = parse(raw);
  const keyOk = SORTS[sort].integerKey
    ? Number.isSafeInteger(v.k)
    : typeof v.k === 'number' && Number.isFinite(v.k);
  if (
    v.s !== sort ||
    !keyOk ||
    !isUuid(v.i) ||
    !isSafeInt(v.t, 0, MAX_TIME_MS) ||
    !isSafeInt(v.m, 0, Number.MAX_SAFE_INTEGER)
  ) {
    throw malformed();
  }
  return { sort, key: v.k as number, id: v.i, asOf: v.t, maxUnits: v.m };
}

export function encodeReviewCursor(c: ReviewCursor): string {
  return encode({ a: c.at, i: c.id });
}

export function decodeReviewCursor(raw: string | undefined): ReviewCursor | null {
  if (raw === undefined) return null;
  const v = parse(raw);
  if (!isSafeInt(v.a, 0, MAX_TIME_MS * 1000) || !isUuid(v.i)) throw malformed();
  return { at: v.a, id: v.i };
}
