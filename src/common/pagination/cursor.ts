import { Inject, Injectable } from '@nestjs/common';
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync } from 'node:crypto';
import { acceptedSessionClientSecrets } from '../../config/jwt-keys';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { hasControlCharacters } from '../http/control-characters';
import { isUuid } from '../ids';

/**
 * What a cursor field must hold. Every field is checked before any SQL sees it, so a forged
 * cursor is a 400, never a database error:
 * - `uuid`: a UUID (compared with `::uuid`);
 * - `timestamp`: an ISO 8601 / PostgreSQL text timestamp with a zone, a real calendar instant;
 * - `integer`: a safe integer (bigint columns: prices);
 * - `int4`: an integer within PostgreSQL's `integer` (units sold: a larger one failed the
 *   comparison in the database, 22003);
 * - `number`: a finite number (float scores);
 * - `string`: any string without control characters.
 */
export type CursorField = 'string' | 'number' | 'integer' | 'int4' | 'uuid' | 'timestamp';

/** A cursor's sort key: field name → value (`l` is the codec's: the list it was made for). */
type CursorKey = Record<string, string | number> & { l?: never };

/** The field a sealed cursor names its list in: a digest of the caller's description of it. */
const LIST_FIELD = 'l';

/**
 * A short digest of what a list lists (the catalog's sort, category and search; the product a
 * review page is of; whose orders, with which filter): a cursor made for one list and sent to
 * another would page from an arbitrary place in it, repeating or skipping items.
 */
const listTag = (list: string): string =>
  createHash('sha256').update(list).digest('base64url').slice(0, 16);

const malformed = () =>
  new DomainError('VALIDATION_FAILED', 'The cursor is malformed.', {
    errors: [{ field: 'cursor', message: 'cursor is malformed' }],
  });

/** HKDF-SHA-256 of the server secret for one use. */
const derive = (root: Buffer | string, info: string) =>
  Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), info, 32));

/** A cursor key: the AES-256-GCM key and the key of its deterministic nonce. */
interface SealKeys {
  key: Buffer;
  nonceKey: Buffer;
}

const sealKeysOf = (root: Buffer | string): SealKeys => ({
  key: derive(root, 'shop cursor key'),
  nonceKey: derive(root, 'shop cursor nonce'),
});

/**
 * A digest of the keys cursors are sealed and opened under here, the sealing one first (never a
 * key: HKDF of each server secret for this use alone). Two processes sealing under different keys
 * — a rotation's roll — give one page different next cursors, and each may refuse the other's;
 * two opening under different keys answer a cursor differently (one removed after a leak refuses
 * what the other still pages on). The catalog's shared pages are kept apart by it (CatalogCache's
 * page shape): a page is served only by processes that would have built it alike.
 */
export function cursorKeyFingerprint(config: Pick<AppConfig, 'jwt'>): string {
  return acceptedSessionClientSecrets(config)
    .map((root) => derive(root, 'shop cursor key fingerprint').toString('base64url').slice(0, 12))
    .join('.');
}

/** Plaintexts are padded to a multiple of this many bytes (every cursor today is shorter). */
const PAD_BLOCK = 256;
/** AES-256-GCM: a 12-byte nonce, the ciphertext, a 16-byte tag. */
const NONCE = 12;
const TAG = 16;

/**
 * Keyset cursors, sealed: the last row's sort key as JSON, encrypted and authenticated under a
 * key derived from the server secret (AES-256-GCM; sessionClientSecret, as every API process
 * has it). A plain base64url JSON cursor told anyone the key's values — the `popular` listing's
 * is each product's units sold, which the contract keeps out of the product, readable a page of
 * one at a time — and let a client forge any key. Sealed under the signing key's secret, opened
 * under it or a verify-only JWT_VERIFY_ONLY_SECRET's (acceptedSessionClientSecrets: through a
 * rotation's roll a cursor one process made pages on every other). A cursor sealed under neither
 * (forged, altered, or from before a rotation whose previous key is gone) is a 400
 * VALIDATION_FAILED, like a malformed one, and every field is still checked before any SQL sees
 * it. The nonce is an HMAC of the key (a deterministic seal: one page's next cursor is one string,
 * whichever process under the same key wrote it, so cached pages and their cache keys stay one),
 * which reveals only that two cursors are equal.
 */
@Injectable()
export class CursorCodec {
  /** What new cursors are sealed under. */
  private readonly seal: SealKeys;
  /** What cursors are opened under: `seal`, then a verify-only key's. */
  private readonly opens: SealKeys[];

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.opens = acceptedSessionClientSecrets(config).map(sealKeysOf);
    this.seal = this.opens[0];
  }

  /** The next page of `list` after `key` (the last item's sort key). */
  encode(key: CursorKey, list: string): string {
    // padded with spaces (JSON ignores them) to a whole block: the length of a sealed text is
    // its plaintext's, and the digits of the popular sort's units sold showed in it
    const json = Buffer.from(JSON.stringify({ ...key, [LIST_FIELD]: listTag(list) }), 'utf8');
    const padding = Math.ceil(json.length / PAD_BLOCK) * PAD_BLOCK - json.length;
    const plain = Buffer.concat([json, Buffer.alloc(padding, 0x20)]);
    const nonce = createHmac('sha256', this.seal.nonceKey)
      .update(plain)
      .digest()
      .subarray(0, NONCE);
    const cipher = createCipheriv('aes-256-gcm', this.seal.key, nonce);
    const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString('base64url');
  }

  /**
   * The sort key sealed in `cursor`, every field of the kind `shape` says; null when absent. A
   * cursor made for another list than `list` is a 400 naming `what` the list is (a cursor sealed
   * without a list, before lists were named, pages as it always did).
   */
  decode<T extends CursorKey>(
    cursor: string | undefined,
    shape: Record<keyof T, CursorField>,
    list: string,
    what = 'list',
  ): T | null {
    if (cursor === undefined) return null;
    const bytes = Buffer.from(cursor, 'base64url');
    if (bytes.length <= NONCE + TAG || bytes.toString('base64url') !== cursor) throw malformed();
    const plain = openUnder(this.opens, bytes);
    if (!plain) throw malformed();
    const { [LIST_FIELD]: tag, ...key } = readCursorKey(plain, shape) as Record<string, unknown>;
    if (tag !== undefined && tag !== listTag(list)) {
      throw new DomainError('VALIDATION_FAILED', `The cursor belongs to another ${what}.`, {
        errors: [{ field: 'cursor', message: `cursor was made for another ${what}` }],
      });
    }
    return key as T;
  }
}

/** The plaintext of a sealed cursor, under the first key whose tag it carries; null under none. */
function openUnder(keys: readonly SealKeys[], bytes: Buffer): Buffer | null {
  for (const { key } of keys) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG));
      return Buffer.concat([
        decipher.update(bytes.subarray(NONCE, bytes.length - TAG)),
        decipher.final(),
      ]);
    } catch {
      // another key's, or none's
    }
  }
  return null;
}

/** The sort key in `plain` (JSON), every field of the kind `shape` says, or a 400. */
function readCursorKey<T extends CursorKey>(plain: Buffer, shape: Record<keyof T, CursorField>): T {
  try {
    const value = JSON.parse(plain.toString('utf8')) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const record = value as Record<string, unknown>;
      const ok = Object.entries(shape).every(([k, kind]) => isCursorField(record[k], kind));
      if (ok) return record as T;
    }
  } catch {
    /* fall through */
  }
  throw malformed();
}

function isCursorField(value: unknown, kind: CursorField): boolean {
  switch (kind) {
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'int4':
      return (
        Number.isInteger(value) &&
        (value as number) >= -INT4_LIMIT &&
        (value as number) < INT4_LIMIT
      );
    case 'uuid':
      return isUuid(value);
    case 'timestamp':
      return typeof value === 'string' && isTimestamp(value);
    case 'string':
      return typeof value === 'string' && value.length <= 512 && !hasControlCharacters(value);
  }
}

/** PostgreSQL's `integer` spans [-2^31, 2^31 - 1]. */
const INT4_LIMIT = 2 ** 31;

// 2026-11-30T07:28:32.123Z (toISOString) or 2026-11-30 07:28:32.123456+00 (PostgreSQL text)
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:Z|[+-](\d{2})(?::?(\d{2}))?)$/;

/**
 * A real instant that PostgreSQL's timestamptz input accepts (no 30 February, no hour 24) and
 * JavaScript's Date reads too (a cursor's instant may be re-issued through `Date`: V8 reads
 * neither `T…+05`, an offset in hours only after a `T`, nor some other forms PostgreSQL takes),
 * within years 1..9999 both as written and in UTC: re-issued, `toISOString` writes it in UTC —
 * 9999-12-31T23:59:59-15:59 is in year 10000 there (`+010000-…`), 0001-01-01T00:00:00+15:59 in
 * year 0, and a next cursor written so would be refused as malformed.
 */
export function isTimestamp(value: string): boolean {
  const m = TIMESTAMP.exec(value);
  const instant = Date.parse(value);
  if (!m || Number.isNaN(instant)) return false;
  const utcYear = new Date(instant).getUTCFullYear();
  if (utcYear < 1 || utcYear > 9999) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const [offsetHours, offsetMinutes] = [Number(m[7] ?? 0), Number(m[8] ?? 0)];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offsetHours <= 15 &&
    offsetMinutes <= 59
  );
}
