import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { DomainError } from '../common/errors/domain-error';
import { headerLines } from '../common/http/header-lines';

export const IDEMPOTENCY_HEADER = 'idempotency-key';
/**
 * How long a key's record lives from the clock of the host that stamps it: API.md's 24 h, plus
 * 5 minutes for that clock's skew — the record is judged (a replay, a takeover, the purge) on
 * the database's clock (`statement_timestamp()`), so a stamping host running behind it would
 * otherwise have its record dropped before 24 h (a retry at 23 h 59 m then runs the request
 * again). The stamping host's clock is the only one that takes part: the purging worker's and a
 * retry's host's do not.
 */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000 + 5 * 60 * 1000;

/** Whose keys these are: a signed-in user's (an anonymous request's are its client address's). */
export const userPrincipal = (userId: string): string => `user:${userId}`;
const PRINTABLE_ASCII = /^[\x20-\x7E]{1,255}$/;

const invalidKey = () =>
  new DomainError(
    'IDEMPOTENCY_KEY_INVALID',
    'Idempotency-Key must be sent once, as 1 to 255 printable ASCII characters.',
  );

/** Returns the key, undefined when absent, or throws IDEMPOTENCY_KEY_INVALID. */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!PRINTABLE_ASCII.test(value) || value.trim() === '') throw invalidKey();
  return value;
}

/** What of a request the key is read from: its headers, and the raw request's header lines. */
export interface KeyedRequest {
  headers: IncomingHttpHeaders;
  raw: { rawHeaders: string[] };
}

/**
 * The request's Idempotency-Key (parseIdempotencyKey). A key sent in more than one header line is
 * IDEMPOTENCY_KEY_INVALID: Node joins repeated lines into one value (`K, K`), which would pass as
 * another key — a retry whose key a client middleware or a proxy added a second time would run
 * the request again (a second order) instead of replaying it.
 */
export function idempotencyKeyOf(request: KeyedRequest): string | undefined {
  const header = request.headers[IDEMPOTENCY_HEADER];
  if (header === undefined) return undefined;
  if (headerLines(request.raw.rawHeaders, IDEMPOTENCY_HEADER) > 1) throw invalidKey();
  return parseIdempotencyKey(header);
}

/** JSON with object keys sorted at every level, so equal bodies give equal fingerprints. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value as Record<string, unknown>)
    .sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * The body's fingerprint: its canonical JSON, hashed. A request without a body keeps the
 * fingerprint it always had (JSON `null`'s: an instance of the previous build, mid-deploy or
 * after a rollback, computes the same for a retry of it); the JSON body `null` itself — which the
 * validation pipe refuses, so it is never stored — gets one of its own, so sent with the key of a
 * stored body-less checkout it is another request (422), not a replay of it.
 */
export function fingerprint(body: unknown): string {
  if (body === null) return sha256('<the JSON body null>');
  return sha256(canonicalJson(body ?? null));
}

const LEFT_OUT = fingerprint(undefined);
const EMPTY_OBJECT = fingerprint({});

/**
 * The fingerprints a body (its fingerprint `own`) is the same request as: its own; a left-out body and `{}` are one
 * another's too — every route reads them alike (the ValidationPipe makes either an empty DTO,
 * UnreadInputGuard lets only these through where no body is read), so a client's retry that
 * sends `{}` where the first attempt sent nothing (or the reverse) is a replay, not a 422.
 */
export function sameBodyFingerprints(own: string): readonly string[] {
  return own === LEFT_OUT || own === EMPTY_OBJECT ? [LEFT_OUT, EMPTY_OBJECT] : [own];
}
