import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { isUUID } from 'class-validator';
import type { AuthenticatedRequest } from '../auth/principal';
import type { DomainError } from '../common/errors/domain-error';
import { isCanonicalUuid } from '../common/ids';
import { KeyedRequest, idempotencyKeyOf, userPrincipal } from '../idempotency/idempotency-key';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { SoldOutMarks } from '../inventory/sold-out';
import { insufficient } from '../inventory/stock-reservation.service';
import { MetricsService } from '../metrics/metrics.service';

/** Orders with more lines than this always go the normal path (a flash sale is one line). */
const MAX_FAST_LINES = 20;

interface Line {
  productId: string;
  quantity: number;
}

/**
 * The lines of a body the normal path would accept as it is — `{ items: [{ productId,
 * quantity }] }`, nothing else, lower-case UUIDs, integer quantities 1..1000, no duplicate
 * products — in product id order; null for anything else (a cart checkout, or a body the
 * ValidationPipe would refuse or reshape), which then goes the normal path.
 */
export function fastPathLines(body: unknown): Line[] | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'items') return null;
  const items = (body as { items: unknown }).items;
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_FAST_LINES) return null;
  const lines: Line[] = [];
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return null;
    const { productId, quantity, ...rest } = item as Record<string, unknown>;
    if (Object.keys(rest).length > 0) return null;
    // lower case, and a UUID the pipe's @IsUUID() takes (its version and variant digits)
    if (typeof productId !== 'string' || !isCanonicalUuid(productId) || !isUUID(productId))
      return null;
    if (
      typeof quantity !== 'number' ||
      !Number.isInteger(quantity) ||
      quantity < 1 ||
      quantity > 1000
    )
      return null;
    lines.push({ productId, quantity });
  }
  lines.sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
  if (lines.some((l, i) => i > 0 && lines[i - 1].productId === l.productId)) return null;
  return lines;
}

/** Set by the first request hook when its own check found nothing to refuse (no second read). */
const JUDGED = Symbol('sold-out fast path judged');
type Judged = { [JUDGED]?: true };

/** Marks a request whose sold-out check already ran (in the first request hook) and let it through. */
export function markJudged(request: object): void {
  (request as Judged)[JUDGED] = true;
}

/** The request's Idempotency-Key; undefined when missing or invalid (the interceptor answers 400). */
export function fastPathKey(request: KeyedRequest): string | undefined {
  try {
    return idempotencyKeyOf(request);
  } catch {
    return undefined;
  }
}

/**
 * The sold-out fast path of `POST /v1/orders` (issue 14): a checkout whose every product is
 * marked sold out in Redis (SoldOutMarks) is refused with the normal path's 409
 * INSUFFICIENT_STOCK body — each line with `available: 0` — without a database transaction.
 *
 * The decision — `soldOutRefusal()` (the marks), then `stillRefused()` (the key in the database,
 * then the marks again); `refusal()` runs both — is made in one of two places, with the same code:
 * - the adapter's first request hook (sold-out-checkout.hook.ts), ahead of Nest's middleware
 *   and pipeline, for a plain, small JSON body with a bearer token: between the two steps it
 *   verifies the token with the access-token guard's own strategy, then counts the rate limits
 *   with the global guards themselves (before the key question, so a client over its limit is
 *   refused without joining it; a request that then goes on to the normal path is marked as
 *   counted — markRateLimitsCounted — and its guards do not count it twice); on any doubt it
 *   lets the request through, marked as judged when its check ran and found nothing to refuse;
 * - otherwise this guard, the route's own: after authentication, the per-IP and per-user rate
 *   limits and the permission check (global guards), before the idempotency interceptor opens
 *   its transaction.
 * It only ever refuses; any doubt (no usable key, a body the normal path might answer
 * differently, a product not marked, Redis or the database slow or down) lets the request
 * through.
 *
 * Idempotency (API.md): a refusal stores nothing, like the normal path's 409, so a retry with
 * the same key runs afresh. A key that holds something is never refused: once the marks say
 * "sold out" (and, at the front, once the token is verified), the database is asked
 * (IdempotencyService#keyInUse: one statement for all waiting requests, no transaction, the hot
 * row untouched) whether a request with the key is running right now — its twin, which the
 * normal path answers 409 IDEMPOTENCY_KEY_IN_USE — or the key has a live record: a retry of a
 * stored 201 is replayed, the key with another body or used on another route gets 422
 * IDEMPOTENCY_KEY_REUSED. The database is the truth here, not Redis: a Redis that lost its
 * data, or never heard of the key, cannot turn a stored 201 into a 409. The question is asked
 * after the marks were read, so a twin that committed before the marks said "sold out" is seen.
 *
 * Where both would apply, the fast path answers INSUFFICIENT_STOCK where the normal path would
 * have named a per-customer limit first — a purchase cap (409 PURCHASE_LIMIT_EXCEEDED) or the
 * day's allowance of abandoned orders (429 RATE_LIMITED), both decided in the checkout's COMMIT
 * message — or a total under ORDER_MINIMUM_AMOUNT or over ORDER_MAXIMUM_AMOUNT (409
 * ORDER_NOT_PAYABLE, from the price snapshot): either way nothing is reserved, and the products
 * are sold out.
 */
@Injectable()
export class CheckoutSoldOutGuard implements CanActivate {
  private readonly refused: Counter<string>;

  constructor(
    private readonly marks: SoldOutMarks,
    private readonly idempotency: IdempotencyService,
    metrics: MetricsService,
  ) {
    this.refused = metrics.counter(
      'checkout_sold_out_fast_refusals_total',
      'Checkouts refused by the sold-out fast path (no database transaction)',
    );
  }

  /**
   * The fast path's decision for an authenticated checkout with a valid Idempotency-Key: the
   * 409 INSUFFICIENT_STOCK to answer, or null — the normal path decides.
   */
  async refusal(userId: string, key: string, body: unknown): Promise<DomainError | null> {
    const refusal = await this.soldOutRefusal(body);
    return refusal && (await this.stillRefused(userId, key, body)) ? refusal : null;
  }

  /**
   * The second step: the user's key holds nothing (else the normal path replays or refuses by
   * it), and the products are still all marked sold out once it has been asked about. The
   * question can take ~2.5 s under a sale's load: a restock or cancel answered meanwhile cleared
   * the marks, and refusing on the first look was a false 409 for a unit that was there. (The
   * second look shares its event-loop turn's one MGET.)
   */
  async stillRefused(userId: string, key: string, body: unknown): Promise<boolean> {
    return !(await this.keyInUse(userId, key)) && (await this.soldOutRefusal(body)) !== null;
  }

  /** The first step: the 409 to answer if every product of this body is known sold out (Redis). */
  async soldOutRefusal(body: unknown): Promise<DomainError | null> {
    const lines = fastPathLines(body);
    if (!lines || !(await this.marks.knownSoldOut(lines.map((l) => l.productId)))) return null;
    return insufficient(
      lines.map((l) => ({ productId: l.productId, requested: l.quantity, available: 0 })),
    );
  }

  /** The second step: whether the user's key holds something (then the normal path answers). */
  keyInUse(userId: string, key: string): Promise<boolean> {
    return this.idempotency.keyInUse(userPrincipal(userId), key);
  }

  /** A refusal is being answered (the metric). */
  counted<T>(refusal: T): T {
    this.refused.inc();
    return refusal;
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest & Judged>();
    const user = request.user;
    if (!user) return true;
    const key = fastPathKey(request);
    if (key === undefined) return true; // the interceptor answers 400 IDEMPOTENCY_KEY_MISSING / _INVALID

    if (!request[JUDGED]) {
      const refusal = await this.refusal(user.userId, key, request.body);
      if (refusal) throw this.counted(refusal);
    }
    return true;
  }
}
