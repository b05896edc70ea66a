import Stripe from 'stripe';
import { ResponseBodyCut, boundedStripeHttpClient } from './stripe-http-client';
import {
  BUDGET_SPENT,
  CallBudget,
  dateOfUnixSeconds,
  DisputeOfIntent,
  GatewayError,
  REPLAYED_FAILURE,
  GatewayIntent,
  GatewayRefund,
  IntentStatus,
  ListedDispute,
  ListedIntent,
  ListedRefund,
  MadeBetween,
  NewIntent,
  NewRefund,
  Page,
  PageRequest,
  PaymentGateway,
  RefundStatus,
} from './payment-gateway';

/** Stripe's intent statuses, folded onto the four our finalizer acts on. */
export function intentStatusOf(status: Stripe.PaymentIntent.Status): IntentStatus {
  switch (status) {
    case 'succeeded':
    case 'canceled':
    case 'processing':
      return status;
    case 'requires_capture': // we never authorize-only; treat as in flight
      return 'processing';
    case 'requires_payment_method':
    case 'requires_confirmation':
    case 'requires_action': // the customer's turn
      return 'requires_payment_method';
  }
}

function refundStatusOf(status: string | null): RefundStatus {
  if (status === 'succeeded') return 'succeeded';
  if (status === 'failed' || status === 'canceled') return 'failed';
  return 'pending'; // pending | requires_action
}

/** A Stripe dispute as the gateway reports it (retrieved, or listed), with the intent it disputes. */
function mapDispute(d: Stripe.Dispute): DisputeOfIntent {
  return {
    id: d.id,
    status: d.status,
    amount: d.amount,
    currency: d.currency.toUpperCase(),
    reason: d.reason ?? null,
    evidenceDueBy: dateOfUnixSeconds(d.evidence_details?.due_by),
    intentId:
      typeof d.payment_intent === 'string' ? d.payment_intent : (d.payment_intent?.id ?? null),
  };
}

/** Answers that are final: the provider looked at the request and said no. */
const FINAL_STATUSES = new Set([400, 402, 404]);
/** …except these, which only say "not now" (a concurrent twin, a lock on Stripe's side). */
const TRANSIENT_CODES = new Set(['idempotency_key_in_use', 'lock_timeout', 'rate_limit']);

/** How long one request to Stripe may take (the SDK's timeout), and how often it is sent again. */
const ATTEMPT_TIMEOUT_MS = 8_000;
const NETWORK_RETRIES = 2;

/** The SDK's options for a call no one waits on (the worker's): its own timeout and retries. */
const UNBUDGETED: Stripe.RequestOptions = {
  timeout: ATTEMPT_TIMEOUT_MS,
  maxNetworkRetries: NETWORK_RETRIES,
};

/** Within a budget: the pause before the one retry, and what must be left to make it. */
const BUDGET_RETRY_PAUSE_MS = 250;
const BUDGET_RETRY_MIN_LEFT_MS = 1_000;

const budgetSpent = () =>
  new GatewayError('unavailable', BUDGET_SPENT, 'the caller stopped waiting for the provider');

/**
 * `send` within `budget`: each attempt with the SDK's own retries off and a timeout of at most
 * what is left, answered by the deadline or BUDGET_SPENT (the SDK's timeout is the socket's
 * silence, not the whole answer); one more attempt after an unavailable answer when at least a
 * second is left. The SDK's three attempts of 8 s and its waits between them kept a customer
 * waiting ~25 s on a slow Stripe, and a retry it had scheduled (after a `Retry-After` of up to a
 * minute) was sent after the customer had their 503 (diff review). What is sent carries an
 * idempotency key or is idempotent by nature: the customer's retry meets its outcome. Errors come
 * out as thrown (callers read Stripe's own). Without a budget: the SDK's timeout and retries.
 */
async function within<T>(
  budget: CallBudget | undefined,
  send: (options: Stripe.RequestOptions) => Promise<T>,
): Promise<T> {
  if (!budget) return send(UNBUDGETED);
  for (let attempt = 1; ; attempt++) {
    const left = budget.by - performance.now();
    if (left <= 0) throw budgetSpent();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        send({
          timeout: Math.max(1, Math.min(ATTEMPT_TIMEOUT_MS, Math.floor(left))),
          maxNetworkRetries: 0,
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(budgetSpent()), left);
        }),
      ]);
    } catch (err) {
      const seen = gatewayErrorOf(err);
      const again =
        attempt === 1 &&
        seen.kind === 'unavailable' &&
        seen.code !== BUDGET_SPENT &&
        seen.code !== REPLAYED_FAILURE &&
        budget.by - performance.now() >= BUDGET_RETRY_MIN_LEFT_MS + BUDGET_RETRY_PAUSE_MS;
      if (!again) throw err;
    } finally {
      clearTimeout(timer);
    }
    await new Promise((resolve) => setTimeout(resolve, BUDGET_RETRY_PAUSE_MS));
  }
}

/** One page of a Stripe list (the cursor of the next: its last item's id, while it has more), mapped. */
async function pageOf<S extends { id: string }, T>(
  list: Promise<Stripe.ApiList<S>>,
  map: (s: S) => T,
): Promise<Page<T>> {
  const { data, has_more } = await list;
  return {
    items: data.map(map),
    next: has_more && data.length > 0 ? data[data.length - 1].id : null,
  };
}

/** A list's `created` filter, `limit` and `starting_after`, in Stripe's whole seconds. */
const listParams = (made: MadeBetween, page: PageRequest) => ({
  created: {
    gte: Math.floor(made.from.getTime() / 1000),
    ...(made.before ? { lt: Math.floor(made.before.getTime() / 1000) } : {}),
  },
  limit: page.limit,
  ...(page.after === undefined ? {} : { starting_after: page.after }),
});

/** Generations of an idempotency key tried, at most, in one call (underKeyGenerations). */
const KEY_GENERATIONS = 5;

/**
 * `send` under `key`; when Stripe answers it with a 5xx it saved under that key (API v1 keeps the
 * first answer once the endpoint began executing, 500s included, for 24 h at least), under the
 * key's next generation (`<key>:g2`, `:g3` … up to KEY_GENERATIONS) — after `madeAnyway` says the
 * failed request did not make the object after all (a refund: it must never be made twice). Every
 * retry got the saved 500 replayed: an order could not be paid until it expired, a refund stayed
 * pending for a day (stripe review). The generations are the same for every caller, so two
 * attempts at once (a request and its follow-up job) still share each key, and Stripe makes one
 * object of them; a generation is used only once the one before it is known to have failed.
 */
async function underKeyGenerations<T>(
  key: string,
  send: (key: string) => Promise<T>,
  madeAnyway?: () => Promise<T | undefined>,
): Promise<T> {
  for (let generation = 1; ; generation++) {
    try {
      return await send(generation === 1 ? key : `${key}:g${generation}`);
    } catch (err) {
      if (!replayedServerError(err) || generation >= KEY_GENERATIONS) throw err;
      const made = await madeAnyway?.();
      if (made !== undefined) return made;
    }
  }
}

/**
 * A 5xx Stripe saved under the request's idempotency key, replayed (`Idempotent-Replayed: true`):
 * every retry with that key gets the same answer for as long as Stripe keeps it.
 */
function replayedServerError(err: unknown): boolean {
  return (
    err instanceof Stripe.errors.StripeError &&
    (err.statusCode ?? 0) >= 500 &&
    String(err.headers?.['idempotent-replayed'] ?? '').toLowerCase() === 'true'
  );
}

/**
 * Our gateway error for whatever the SDK threw. Only a card or invalid-request answer (400, 402,
 * 404) is a rejection; everything else — 401/403 (keys being rotated), 409 (a concurrent request
 * with the same idempotency key), idempotency mismatches, 429, 5xx, network errors — leaves the
 * outcome unknown, to be retried with the same key. A 401/403 is marked `authFailed` (our key was
 * refused, not Stripe down), its message with the key Stripe quotes in it taken out.
 */
export function gatewayErrorOf(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (replayedServerError(err))
    return new GatewayError('unavailable', REPLAYED_FAILURE, (err as Error).message);
  const raw = err instanceof Stripe.errors.StripeError ? err.raw : undefined;
  if (typeof raw === 'object' && raw !== null && 'exception' in raw) {
    const { exception } = raw;
    // (the SDK's "Invalid JSON received": a body cut off, boundedStripeHttpClient)
    if (exception instanceof ResponseBodyCut)
      return new GatewayError('unavailable', 'response_cut', exception.message);
  }
  if (keyRefused(err)) {
    return new GatewayError('unavailable', err.code ?? err.type, withoutKeys(err.message), {
      authFailed: true,
    });
  }
  if (err instanceof Stripe.errors.StripeError) {
    const final =
      (err.type === 'StripeCardError' || err.type === 'StripeInvalidRequestError') &&
      err.statusCode !== undefined &&
      FINAL_STATUSES.has(err.statusCode) &&
      !TRANSIENT_CODES.has(err.code ?? '');
    return new GatewayError(final ? 'rejected' : 'unavailable', err.code ?? err.type, err.message);
  }
  return new GatewayError(
    'unavailable',
    undefined,
    err instanceof Error ? err.message : String(err),
  );
}

/** Stripe refused our key: it is invalid, expired or revoked (401), or lacks a permission (403). */
function keyRefused(err: unknown): err is Stripe.errors.StripeError {
  return (
    err instanceof Stripe.errors.StripeAuthenticationError ||
    err instanceof Stripe.errors.StripePermissionError ||
    (err instanceof Stripe.errors.StripeError && (err.statusCode === 401 || err.statusCode === 403))
  );
}

/**
 * `message` with any API key it quotes replaced: Stripe names the key it refused, masked but for
 * its prefix and last characters (`Invalid API Key provided: sk_live_****…abcd`, `The provided key
 * 'rk_live_…' does not have …`) — none of it belongs in a log.
 */
export function withoutKeys(message: string): string {
  return message.replace(/[^\s'"`]+/g, (word) =>
    /^(sk|rk|pk)_/.test(word) || word.includes('*') ? '[key]' : word,
  );
}

/**
 * The production gateway: the official SDK, pointed at STRIPE_API_URL when set (tests use a local
 * fake). Every write passes our deterministic idempotency key; the SDK retries network errors and
 * 5xx answers itself with that same key.
 */
export class StripeGateway implements PaymentGateway {
  readonly provider = 'stripe' as const;
  private readonly stripe: Stripe;

  constructor(secretKey: string, apiUrl?: string) {
    const url = apiUrl ? new URL(apiUrl) : undefined;
    const protocol = url && url.protocol !== 'https:' ? 'http' : 'https';
    this.stripe = new Stripe(secretKey, {
      httpClient: boundedStripeHttpClient(protocol, ATTEMPT_TIMEOUT_MS),
      maxNetworkRetries: NETWORK_RETRIES,
      timeout: ATTEMPT_TIMEOUT_MS,
      ...(url
        ? {
            host: url.hostname,
            port: url.port || (protocol === 'https' ? 443 : 80),
            protocol,
          }
        : {}),
    });
  }

  /** Under our key, or its next generations (underKeyGenerations). */
  createIntent(input: NewIntent, budget?: CallBudget): Promise<GatewayIntent> {
    // an intent the failed request may have made anyway was never handed to a customer (no client
    // secret of it left here), so it is never paid: the finalizer adopts it only as the order's
    // one payment, or leaves it — nothing to look for first
    return this.call(async () =>
      this.mapIntent(
        await within(budget, (options) =>
          underKeyGenerations(input.idempotencyKey, async (idempotencyKey) => {
            const create = (metadata: Record<string, string>) =>
              this.stripe.paymentIntents.create(
                {
                  amount: input.amount,
                  currency: input.currency.toLowerCase(),
                  metadata,
                  automatic_payment_methods: { enabled: true },
                },
                { idempotencyKey, ...options },
              );
            try {
              return await create({ orderId: input.orderId, shop: input.shop });
            } catch (err) {
              // the key's first request came from a release that named no shop (an intent it made
              // but never recorded): Stripe refuses other parameters under that key for a day, so
              // the order was unpayable until it expired — the request as that release sent it
              // replays the intent it made (no second one); adopt() takes it, its order being here
              if (!(err instanceof Stripe.errors.StripeIdempotencyError)) throw err;
              return create({ orderId: input.orderId });
            }
          }),
        ),
      ),
    );
  }

  retrieveIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    return this.call(async () =>
      this.mapIntent(
        await within(budget, (options) => this.stripe.paymentIntents.retrieve(id, {}, options)),
      ),
    );
  }

  async cancelIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    try {
      // no idempotency key of ours (see PaymentGateway); the SDK keys its own network retries
      return this.mapIntent(
        await within(budget, (options) =>
          this.stripe.paymentIntents.cancel(id, { cancellation_reason: 'abandoned' }, options),
        ),
      );
    } catch (err) {
      // Already succeeded or already canceled: Stripe says so with a 400; the current state answers.
      if (
        err instanceof Stripe.errors.StripeError &&
        err.code === 'payment_intent_unexpected_state'
      ) {
        return this.retrieveIntent(id, budget);
      }
      throw gatewayErrorOf(err);
    }
  }

  /**
   * Under our key, or its next generations (underKeyGenerations); within `budget` (an admin
   * waiting), the list that checks a failed generation is part of the one attempt. Out of budget
   * the refund may still have been made: the caller's retry under the same key meets it.
   */
  createRefund(input: NewRefund, budget?: CallBudget): Promise<GatewayRefund> {
    return this.call(() =>
      within(budget, (options) => {
        const send = async (idempotencyKey: string) =>
          this.mapRefund(
            await this.stripe.refunds.create(
              {
                payment_intent: input.intentId,
                amount: input.amount,
                metadata: { refundId: input.refundId, orderId: input.orderId },
              },
              { idempotencyKey, ...options },
            ),
          );
        return input.advanceKeyOnReplay === false
          ? send(input.idempotencyKey)
          : // made anyway by the request that failed? never a second refund: the intent's list says
            underKeyGenerations(input.idempotencyKey, send, async () =>
              (await this.refundsOf(input.intentId, options)).find(
                (r) => r.refundId === input.refundId,
              ),
            );
      }),
    );
  }

  listRefunds(intentId: string, budget?: CallBudget): Promise<GatewayRefund[]> {
    return this.call(() => within(budget, (options) => this.refundsOf(intentId, options)));
  }

  /** Every refund of the intent (the SDK pages through them, each page with `options`). */
  private async refundsOf(
    intentId: string,
    options: Stripe.RequestOptions,
  ): Promise<GatewayRefund[]> {
    const refunds: GatewayRefund[] = [];
    for await (const r of this.stripe.refunds.list(
      { payment_intent: intentId, limit: 100 },
      options,
    )) {
      refunds.push(this.mapRefund(r));
    }
    return refunds;
  }

  retrieveDispute(id: string): Promise<DisputeOfIntent> {
    return this.call(async () => mapDispute(await this.stripe.disputes.retrieve(id)));
  }

  /** With each intent's latest charge (`expand`): when its money was taken (paidAt). */
  listIntentsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedIntent>> {
    return this.call(() =>
      pageOf(
        this.stripe.paymentIntents.list({
          ...listParams(made, page),
          expand: ['data.latest_charge'],
        }),
        (pi) => {
          const charge = typeof pi.latest_charge === 'object' ? pi.latest_charge : null;
          return {
            ...this.mapIntent(pi),
            providerStatus: pi.status,
            createdAt: dateOfUnixSeconds(pi.created),
            paidAt: charge?.paid ? dateOfUnixSeconds(charge.created) : null,
          };
        },
      ),
    );
  }

  listRefundsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedRefund>> {
    return this.call(() =>
      pageOf(this.stripe.refunds.list(listParams(made, page)), (r) => ({
        ...this.mapRefund(r),
        currency: r.currency.toUpperCase(),
        createdAt: dateOfUnixSeconds(r.created),
      })),
    );
  }

  listDisputesMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedDispute>> {
    return this.call(() =>
      pageOf(this.stripe.disputes.list(listParams(made, page)), (d) => ({
        ...mapDispute(d),
        createdAt: dateOfUnixSeconds(d.created),
      })),
    );
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw gatewayErrorOf(err);
    }
  }

  private mapIntent(pi: Stripe.PaymentIntent): GatewayIntent {
    return {
      id: pi.id,
      clientSecret: pi.client_secret ?? '',
      status: intentStatusOf(pi.status),
      amount: pi.amount,
      // succeeded: what was taken — a manual-capture intent (set at the provider: the app makes
      // none) captured in part shows its whole `amount`, and was confirmed and receipted for it
      ...(pi.status === 'succeeded' ? { received: pi.amount_received } : {}),
      currency: pi.currency.toUpperCase(),
      orderId: pi.metadata.orderId ?? '',
      ...(pi.metadata.shop ? { shop: pi.metadata.shop } : {}),
      lastError: pi.last_payment_error?.code ?? pi.last_payment_error?.message ?? undefined,
      ...(pi.status === 'requires_capture' ? { capturable: true } : {}),
    };
  }

  private mapRefund(r: Stripe.Refund): GatewayRefund {
    const intentId =
      typeof r.payment_intent === 'string' ? r.payment_intent : (r.payment_intent?.id ?? '');
    return {
      id: r.id,
      intentId,
      amount: r.amount,
      status: refundStatusOf(r.status),
      refundId: r.metadata?.refundId,
    };
  }
}
