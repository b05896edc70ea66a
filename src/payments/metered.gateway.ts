import { Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { RateLimitedLog } from '../common/logging/rate-limited-log';
import type { MetricsService } from '../metrics/metrics.service';
import {
  BUDGET_SPENT,
  CallBudget,
  DisputeOfIntent,
  GatewayError,
  GatewayIntent,
  GatewayRefund,
  ListedDispute,
  ListedIntent,
  ListedRefund,
  MadeBetween,
  NewIntent,
  NewRefund,
  Page,
  PageRequest,
  PaymentGateway,
} from './payment-gateway';

/** Each gateway method, as `payment_provider_calls_total` names it. */
const OPERATIONS = [
  'create_intent',
  'retrieve_intent',
  'cancel_intent',
  'create_refund',
  'list_refunds',
  'retrieve_dispute',
  'list_intents_made',
  'list_refunds_made',
  'list_disputes_made',
] as const;
type Operation = (typeof OPERATIONS)[number];

/**
 * How a call ended: `ok`; `rejected` (the provider said no: a card, an invalid request);
 * `auth_failed` (it refused our key: rotated, revoked, restricted — retried like `unavailable`,
 * but only a person mends it); `budget_spent` (the waiting customer's CallBudget ran out first);
 * `unavailable` (anything else: no answer, 5xx, 429 — the outcome unknown).
 */
const OUTCOMES = ['ok', 'rejected', 'unavailable', 'auth_failed', 'budget_spent'] as const;
export type CallOutcome = (typeof OUTCOMES)[number];

/** The outcome of a call that threw `err`. */
export function callOutcomeOf(err: unknown): CallOutcome {
  if (!(err instanceof GatewayError)) return 'unavailable';
  if (err.kind === 'rejected') return 'rejected';
  if (err.authFailed) return 'auth_failed';
  if (err.code === BUDGET_SPENT) return 'budget_spent';
  return 'unavailable';
}

/** How often the refused-key error line is written at most (the rest are counted in the next). */
const AUTH_FAILURE_LOG_WINDOW_MS = 10_000;

/**
 * The gateway as the rest of the app calls it (PAYMENT_GATEWAY): each call counted in
 * `payment_provider_calls_total{operation,outcome}` of the process that makes it (the API starts
 * payments, the worker settles, refunds and reconciles), once however many requests it took —
 * and a refused key logged as an error, at most one line per 10 s. A 401/403 is retried like a
 * 500 (the outcome unknown), so without this a rotated STRIPE_SECRET_KEY looked like Stripe being
 * down. Labels are fixed: 9 operations × 5 outcomes, each series there from the start (at 0), so
 * the first failure is an increase.
 */
export class MeteredGateway implements PaymentGateway {
  private readonly logger = new Logger('PaymentGateway');
  private readonly authFailures = new RateLimitedLog(AUTH_FAILURE_LOG_WINDOW_MS);
  private readonly calls: Counter<'operation' | 'outcome'>;

  constructor(
    private readonly inner: PaymentGateway,
    metrics: MetricsService,
  ) {
    this.calls = metrics.counter(
      'payment_provider_calls_total',
      'Calls to the payment provider by this process, per gateway operation and outcome',
      ['operation', 'outcome'],
    );
    for (const operation of OPERATIONS)
      for (const outcome of OUTCOMES) this.calls.inc({ operation, outcome }, 0);
  }

  get provider(): PaymentGateway['provider'] {
    return this.inner.provider;
  }

  createIntent(input: NewIntent, budget?: CallBudget): Promise<GatewayIntent> {
    return this.metered('create_intent', () => this.inner.createIntent(input, budget));
  }

  retrieveIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    return this.metered('retrieve_intent', () => this.inner.retrieveIntent(id, budget));
  }

  cancelIntent(id: string, budget?: CallBudget): Promise<GatewayIntent> {
    return this.metered('cancel_intent', () => this.inner.cancelIntent(id, budget));
  }

  createRefund(input: NewRefund, budget?: CallBudget): Promise<GatewayRefund> {
    return this.metered('create_refund', () => this.inner.createRefund(input, budget));
  }

  listRefunds(intentId: string, budget?: CallBudget): Promise<GatewayRefund[]> {
    return this.metered('list_refunds', () => this.inner.listRefunds(intentId, budget));
  }

  retrieveDispute(id: string): Promise<DisputeOfIntent> {
    return this.metered('retrieve_dispute', () => this.inner.retrieveDispute(id));
  }

  // the listings of what the provider made, a page a call: `npm run payments:orphans`'s (a
  // command's process, never scraped) and the worker's orphan sweep's — a key refused, or a
  // Stripe that does not answer, under the sweep shows here like any other call's

  listIntentsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedIntent>> {
    return this.metered('list_intents_made', () => this.inner.listIntentsMade(made, page));
  }

  listRefundsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedRefund>> {
    return this.metered('list_refunds_made', () => this.inner.listRefundsMade(made, page));
  }

  listDisputesMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedDispute>> {
    return this.metered('list_disputes_made', () => this.inner.listDisputesMade(made, page));
  }

  private async metered<T>(operation: Operation, call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.calls.inc({ operation, outcome: 'ok' });
      return result;
    } catch (err) {
      const outcome = callOutcomeOf(err);
      this.calls.inc({ operation, outcome });
      if (outcome === 'auth_failed') this.logAuthFailure(operation, err as GatewayError);
      throw err;
    }
  }

  /**
   * One error line: which call, and Stripe's error code or class — never its message, which
   * quotes the key it refused (masked but for its first and last characters).
   */
  private logAuthFailure(operation: Operation, err: GatewayError): void {
    const line = `the ${this.inner.provider} payment provider refused our API key (${err.code ?? 'no code'}) on ${operation}: check STRIPE_SECRET_KEY (rotated, revoked or missing a permission?) — no payment can start, and refunds and reconciliation wait, until it is mended`;
    this.authFailures.write('auth_failed', line, (l) => this.logger.error(l));
  }
}
