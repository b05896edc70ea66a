import Stripe from 'stripe';
import {
  BUDGET_SPENT,
  CallBudget,
  dateOfUnixSeconds,
  GatewayDispute,
  GatewayError,
  REPLAYED_FAILURE,
  GatewayIntent,
  GatewayRefund,
  IntentStatus,
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

/** Answers that are final: the provider looked at the request and said no. */
const FINAL_STATUSES = new Set([400, 402, 404]);
/** …except these, which only say "not now" (a concurrent twin, a lock on Stripe's side). */
const TRANSIENT_CODES = new Set(['idempotency_key_in_use', 'lock_timeout', 'rate_limit']);

/** How long one request to Stripe may take (the SDK's timeout), and how often it is sent again. */
const ATTEMPT_TIMEOUT_MS = 8_000;
const NETWORK_RETRIES = 2;

/**
 * The SDK's options for one request within `budget`: two attempts (one retry) of at most half of
 * what is left each — the SDK's own three of 8 s, and its waits between them, kept a customer
 * waiting ~25 s on a slow Stripe. None: the client's own, said again (the SDK refuses an empty
 * options object as an unknown argument).
 */
function requestOptionsWithin(budget?: CallBudget): Stripe.RequestOptions {
  if (!budget) return { timeout: ATTEMPT_TIMEOUT_MS, maxNetworkRetries: NETWORK_RETRIES };
  const left = budget.by - performance.now();
  return {
    timeout: Math.max(1, Math.min(ATTEMPT_TIMEOUT_MS, Math.floor(left / 2))),
    maxNetworkRetries: 1,
  };
}

/**
 * `work` answered by `budget`'s deadline, or BUDGET_SPENT (unavailable) then — the SDK's wait
 * before a retry (a `Retry-After` Stripe sends is honoured up to a minute) is not bounded by its
 * timeout. The request left running ends with its own timeout; everything sent carries an
 * idempotency key or is idempotent by nature, so the caller's retry meets its outcome.
 */
async function within<T>(budget: CallBudget | undefined, work: () => Promise<T>): Promise<T> {
  if (!budget) return work();
  const left = budget.by - performance.now();
  const spent = () =>
    new GatewayError('unavailable', BUDGET_SPENT, 'the caller stopped waiting for the provider');
  if (left <= 0) throw spent();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(spent()), left);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

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
 * outcome unknown, to be retried with the same key.
 */
export function gatewayErrorOf(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (replayedServerError(err))
    return new GatewayError('unavailable', REPLAYED_FAILURE, (err as Error).message);
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
    this.stripe = new Stripe(secretKey, {
      maxNetworkRetries: NETWORK_RETRIES,
      timeout: ATTEMPT_TIMEOUT_MS,
      ...(url
        ? {
            host: url.hostname,
            port: url.port || (url.protocol === 'https:' ? 443 : 80),
            protocol: url.protocol === 'https:' ? 'https' : 'http',
          }
        : {}),
    });
  }

  /** Under our key, or its next generations (underKeyGenerations). */
  createIntent(
    input: {
      orderId: string;
      amount: number;
      currency: string;
      idempotencyKey: string;
    },
    budget?: CallBudget,
  ): Promise<GatewayIntent> {
    // an intent the failed request may have made anyway was never handed to a customer (no client
    // secret of it left here), so it is never paid: the finalizer adopts it only as the order's
    // one payment, or leaves it — nothing to look for first
    return this.call(
      async () =>
        this.mapIntent(
          await underKeyGenerations(input.idempotencyKey, (idempotencyKey) =>
            this.stripe.paymentIntents.create(
              {
                amount: input.amount,
                currency: input.currency.toLowerCase(),
                metadata: { orderId: input.orderId },
                automatic_payment_methods: { enabled: true },
              },
              { idempotencyKey, ...requestOptionsWithin(budget) },
            ),
          ),
        ),
      budget,
    );
  }

  retrieveIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    return this.call(
      async () =>
        this.mapIntent(
          await this.stripe.paymentIntents.retrieve(id, {}, requestOptionsWithin(budget)),
        ),
      budget,
    );
  }

  async cancelIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    try {
      // no idempotency key of ours (see PaymentGateway); the SDK keys its own network retries
      return await within(budget, async () =>
        this.mapIntent(
          await this.stripe.paymentIntents.cancel(
            id,
            { cancellation_reason: 'abandoned' },
            requestOptionsWithin(budget),
          ),
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

  createRefund(input: {
    intentId: string;
    amount: number;
    refundId: string;
    orderId: string;
    idempotencyKey: string;
    advanceKeyOnReplay?: boolean;
  }): Promise<GatewayRefund> {
    const send = async (idempotencyKey: string) =>
      this.mapRefund(
        await this.stripe.refunds.create(
          {
            payment_intent: input.intentId,
            amount: input.amount,
            metadata: { refundId: input.refundId, orderId: input.orderId },
          },
          { idempotencyKey },
        ),
      );
    return this.call(() =>
      input.advanceKeyOnReplay === false
        ? send(input.idempotencyKey)
        : // made anyway by the request that failed? never a second refund: the intent's list says
          underKeyGenerations(input.idempotencyKey, send, async () =>
            (await this.refundsOf(input.intentId)).find((r) => r.refundId === input.refundId),
          ),
    );
  }

  listRefunds(intentId: string): Promise<GatewayRefund[]> {
    return this.call(() => this.refundsOf(intentId));
  }

  /** Every refund of the intent (the SDK pages through them). */
  private async refundsOf(intentId: string): Promise<GatewayRefund[]> {
    const refunds: GatewayRefund[] = [];
    for await (const r of this.stripe.refunds.list({ payment_intent: intentId, limit: 100 })) {
      refunds.push(this.mapRefund(r));
    }
    return refunds;
  }

  retrieveDispute(id: string): Promise<GatewayDispute> {
    return this.call(async () => {
      const d = await this.stripe.disputes.retrieve(id);
      return {
        id: d.id,
        status: d.status,
        amount: d.amount,
        currency: d.currency.toUpperCase(),
        reason: d.reason ?? null,
        evidenceDueBy: dateOfUnixSeconds(d.evidence_details?.due_by),
      };
    });
  }

  private async call<T>(fn: () => Promise<T>, budget?: CallBudget): Promise<T> {
    try {
      return await within(budget, fn);
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
      currency: pi.currency.toUpperCase(),
      orderId: pi.metadata.orderId ?? '',
      lastError: pi.last_payment_error?.code ?? pi.last_payment_error?.message ?? undefined,
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
