import { DomainError } from '../common/errors/domain-error';

/** The payment provider, behind a port: Stripe in production, a simulated one in development. */
export const PAYMENT_GATEWAY = Symbol('PAYMENT_GATEWAY');

export type IntentStatus = 'requires_payment_method' | 'processing' | 'succeeded' | 'canceled';

export interface GatewayIntent {
  id: string;
  clientSecret: string;
  status: IntentStatus;
  /** What the intent asks for (what it was made for). */
  amount: number;
  /**
   * Succeeded: what it took, when the provider says (Stripe's `amount_received`) — less than
   * `amount` for an intent someone set to manual capture at the provider and captured in part.
   */
  received?: number;
  currency: string;
  /** From the intent's metadata: the order it pays for. */
  orderId: string;
  /**
   * From the intent's metadata: the shop that made it (ShopIdentity) — absent from an intent made
   * before intents carried it, or by anything else on the account.
   */
  shop?: string;
  /** Set when the last attempt to pay failed (the intent can still be paid again). */
  lastError?: string;
  /**
   * An authorization holding the customer's money, to capture (Stripe's `requires_capture`,
   * folded into `processing`): we never make one, but an intent changed at the provider can be.
   */
  capturable?: boolean;
}

export type RefundStatus = 'pending' | 'succeeded' | 'failed';

export interface GatewayRefund {
  id: string;
  intentId: string;
  amount: number;
  status: RefundStatus;
  /** Our refund id, when the refund was made through us (metadata). */
  refundId?: string;
}

/** A dispute of a payment (a chargeback, or an inquiry before one), as the provider holds it. */
export interface GatewayDispute {
  id: string;
  /** The provider's status: needs_response, under_review, won, lost, warning_… */
  status: string;
  amount: number;
  /** Upper-case ISO 4217. */
  currency: string;
  reason: string | null;
  /** The deadline for our evidence (unanswered by then, it is lost); null when none is set. */
  evidenceDueBy: Date | null;
}

/**
 * The creation times a list keeps to (the provider's, in whole seconds): made at or after `from`,
 * and before `before` when it is given.
 */
export interface MadeBetween {
  from: Date;
  before?: Date;
}

/**
 * Which page of a list: the one after the cursor `after` (a page's `next`; the first page without
 * it), of at most `limit` (1 to 100) items.
 */
export interface PageRequest {
  after?: string;
  limit: number;
}

/**
 * One page of a list, newest first: `next` is the cursor of the page after it (older items), null
 * on the last page.
 */
export interface Page<T> {
  items: T[];
  next: string | null;
}

/**
 * An intent as listed: when the provider made it, its own status (`requires_capture` …), and when
 * its money was taken — its latest charge's time, once that charge took or holds the money; null
 * otherwise (a bank debit is charged when it starts, and settles days later: its time is that
 * start's).
 */
export interface ListedIntent extends GatewayIntent {
  providerStatus: string;
  createdAt: Date | null;
  paidAt: Date | null;
}

/** A refund as listed: its currency (upper-case; null where the provider does not say) and time. */
export interface ListedRefund extends GatewayRefund {
  currency: string | null;
  createdAt: Date | null;
}

/**
 * A dispute as the provider holds it, with the intent it disputes (null: a charge made without one,
 * which is none of ours).
 */
export interface DisputeOfIntent extends GatewayDispute {
  intentId: string | null;
}

/** A dispute as listed: when it was opened, too. */
export interface ListedDispute extends DisputeOfIntent {
  createdAt: Date | null;
}

/** Latest instant PostgreSQL's timestamptz and JavaScript's Date both hold: 9999-12-31T23:59:59Z. */
const MAX_UNIX_SECONDS = 253_402_300_799;

/** A provider's timestamp (whole seconds since the epoch) as a Date; null for none or nonsense. */
export function dateOfUnixSeconds(seconds: unknown): Date | null {
  return Number.isSafeInteger(seconds) &&
    (seconds as number) > 0 &&
    (seconds as number) <= MAX_UNIX_SECONDS
    ? new Date((seconds as number) * 1000)
    : null;
}

/**
 * A gateway call that did not succeed. `rejected`: the provider answered and said no (do not
 * retry the same request); `unavailable`: no answer or a 5xx/429 (the outcome is unknown — retry
 * with the same idempotency key). `authFailed`: an unavailable answer that is the provider refusing
 * our credentials (Stripe's 401/403: a key rotated, revoked or restricted) — retried like any
 * other, but a person must mend it (MeteredGateway counts and logs it).
 */
export class GatewayError extends Error {
  readonly authFailed: boolean;

  constructor(
    readonly kind: 'rejected' | 'unavailable',
    readonly code: string | undefined,
    message: string,
    options: { authFailed?: boolean } = {},
  ) {
    super(message);
    this.name = 'GatewayError';
    this.authFailed = options.authFailed ?? false;
  }

  /**
   * The answer to a request that met it (ProblemDetailsFilter): unavailable → 503 with
   * Retry-After, a refusal → 502. The provider's own message stays in the logs.
   */
  toDomainError(): DomainError {
    return this.kind === 'unavailable'
      ? new DomainError(
          'SERVICE_UNAVAILABLE',
          'The payment provider is unavailable; retry later.',
          {
            headers: { 'Retry-After': '5' },
          },
        )
      : new DomainError(
          'PAYMENT_PROVIDER_REJECTED',
          `The payment provider refused the request (${this.code ?? 'no reason given'}).`,
        );
  }
}

/**
 * The gateway did not answer (timeout, 5xx): a sweep stops asking it for the rest of its run
 * rather than wait for the same timeout once per item; the next run goes on.
 */
export const isGatewayUnavailable = (err: unknown): boolean =>
  err instanceof GatewayError && err.kind === 'unavailable';

/**
 * A deadline (on `performance.now()`'s clock) that a caller who is waiting — a customer's payment
 * start, an admin's refund — sets for the provider calls it makes: each call answers by then, its
 * retries included, or fails as unavailable (BUDGET_SPENT). Workers set none: theirs are the SDK's
 * own timeout and retries.
 */
export interface CallBudget {
  readonly by: number;
}

/** A budget of `ms` from now. */
export const budgetOf = (ms: number): CallBudget => ({ by: performance.now() + ms });

/** The code of an unavailable answer given because the caller's CallBudget ran out. */
export const BUDGET_SPENT = 'budget_spent';

/** An intent to create: for an order, its amount, under our idempotency key. */
export interface NewIntent {
  orderId: string;
  /** This shop's identity (ShopIdentity), kept in the intent's metadata beside the order's id. */
  shop: string;
  amount: number;
  currency: string;
  idempotencyKey: string;
}

/** A refund to make, under our idempotency key. */
export interface NewRefund {
  intentId: string;
  amount: number;
  refundId: string;
  orderId: string;
  idempotencyKey: string;
  /**
   * Whether a failure the provider saved under the key may move the refund on to the key's next
   * generation (StripeGateway): not once the provider may have forgotten the key (a day on),
   * when an attempt under the first key could make the refund afresh beside one made under the
   * next.
   */
  advanceKeyOnReplay?: boolean;
}

/**
 * Every outbound write carries a deterministic idempotency key derived from our own ids, so a
 * retry after a crash or timeout replays the provider's first answer instead of acting twice.
 */
export interface PaymentGateway {
  readonly provider: 'stripe' | 'simulated';
  /** Creates the intent, or returns the one already made under `idempotencyKey`. */
  createIntent(input: NewIntent, budget?: CallBudget): Promise<GatewayIntent>;
  retrieveIntent(id: string, budget?: CallBudget): Promise<GatewayIntent>;
  /**
   * Cancels an unpaid intent; a succeeded (or, at Stripe, a processing) one stays as it is — the
   * returned intent says which. No key of ours: cancelling is idempotent by nature, and a fixed
   * key would make the provider replay a refusal it stored (the intent was processing) for 24 h
   * to a cancel that must run again once the intent is payable again.
   */
  cancelIntent(id: string, budget?: CallBudget): Promise<GatewayIntent>;
  /** Refunds `amount` of a succeeded intent. */
  createRefund(input: NewRefund, budget?: CallBudget): Promise<GatewayRefund>;
  /** Every refund of the intent, wherever it was made (us or the provider's dashboard). */
  listRefunds(intentId: string, budget?: CallBudget): Promise<GatewayRefund[]>;
  /**
   * A dispute (named by a `charge.dispute.*` event, or recorded here), as it is now, with the
   * intent it disputes.
   */
  retrieveDispute(id: string): Promise<DisputeOfIntent>;
  /**
   * A page of the account's intents, refunds and disputes made within `made` (the provider's
   * creation time, in whole seconds), newest first — whoever made them: what a restore from a
   * backup lost, or a webhook never told of (PaymentOrphans). Read-only. A cursor the provider does
   * not know is a refusal (`rejected`).
   */
  listIntentsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedIntent>>;
  listRefundsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedRefund>>;
  listDisputesMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedDispute>>;
}

/**
 * The code of an unavailable answer that is a failure the provider saved under the request's
 * idempotency key and replays to every retry with it (Stripe: a 500, for a day): about that key
 * only, not the provider as a whole.
 */
export const REPLAYED_FAILURE = 'idempotent_replayed';

/** Deterministic idempotency keys, derived from our own ids. */
export const gatewayKeys = {
  createIntent: (orderId: string) => `order:${orderId}:payment-intent`,
  refund: (refundId: string) => `refund:${refundId}`,
};
