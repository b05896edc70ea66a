import { Inject, Injectable } from '@nestjs/common';
import Stripe from 'stripe';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { OutboxRepository } from '../outbox/outbox.repository';
import { WebhookEventRepository } from './webhook-event.repository';

/** How Stripe's SDK decodes a body given as bytes before checking its signature. */
const UTF8 = new TextDecoder('utf8');

export const SIGNATURE_TOLERANCE_SECONDS = 300;

const isText = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * An event id as Stripe makes them (`evt_…`, v1 and v2 alike) — and one the event's job can be
 * named by: BullMQ refuses a job id of digits only or with a `:`, and the outbox row that would
 * become the job was parked dead after its retries.
 */
const EVENT_ID = /^evt_[A-Za-z0-9_]{1,251}$/;

/**
 * What a signed event must carry to be recorded: an id (EVENT_ID; its duplicates are found by it)
 * and a type, as text; and the payment intent it is about, if its object names one — none for an
 * object of another kind or a thin event (Stripe's v2 events carry no `data.object`), recorded and
 * later marked processed with nothing to do. Anything else signed with our secret (an array,
 * `null`, an event without an id) was answered 500 — the code read `event.data.object` of whatever
 * it got: bad input is a 400 VALIDATION_FAILED, with nothing stored.
 */
function recordable(event: unknown): { id: string; type: string; intentId: string | null } {
  const e = (typeof event === 'object' && event !== null && !Array.isArray(event) ? event : {}) as {
    id?: unknown;
    type?: unknown;
    data?: { object?: unknown } | null;
  };
  if (typeof e.id !== 'string' || !EVENT_ID.test(e.id) || !isText(e.type, 255)) {
    throw new DomainError('VALIDATION_FAILED', 'The event has no id or type.');
  }
  const object = (typeof e.data === 'object' && e.data !== null ? e.data.object : undefined) as
    { id?: unknown; object?: unknown; payment_intent?: unknown } | null | undefined;
  const named =
    typeof object !== 'object' || object === null
      ? undefined
      : object.object === 'payment_intent'
        ? object.id
        : object.payment_intent;
  return { id: e.id, type: e.type, intentId: isText(named, 255) ? named : null };
}

/**
 * The webhook inbox: verify the Stripe-Signature over the raw bytes before anything is parsed or
 * stored, then record the event once (unique event id) together with an outbox row that becomes
 * a `payments.process-event` job (jobId = event id). Acknowledged only after that commit.
 */
@Injectable()
export class WebhooksService {
  private readonly stripe: Stripe;

  constructor(
    private readonly events: WebhookEventRepository,
    private readonly outbox: OutboxRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    // only the SDK's offline signature verification is used here; no API call is made
    this.stripe = new Stripe(config.stripe.secretKey ?? 'sk_test_unused_for_webhooks');
  }

  /**
   * The event, if `signature` is Stripe's over these exact bytes and not older than 300 s;
   * otherwise 400 WEBHOOK_SIGNATURE_INVALID. Run by StripeSignatureGuard, before anything else
   * looks at the request (the idempotency interceptor included).
   */
  verify(rawBody: Buffer | undefined, signature: string | undefined): Stripe.Event {
    try {
      if (!rawBody || !signature) throw new Error('missing body or signature');
      return this.stripe.webhooks.constructEvent(
        rawBody,
        signature,
        this.config.stripe.webhookSecret,
        SIGNATURE_TOLERANCE_SECONDS,
      );
    } catch {
      throw new DomainError(
        'WEBHOOK_SIGNATURE_INVALID',
        'The Stripe-Signature is invalid or stale.',
      );
    }
  }

  /** Whether `signature` is Stripe's over these exact bytes, not older than 300 s (nothing parsed). */
  signed(rawBody: Buffer, signature: string): boolean {
    try {
      return this.stripe.webhooks.signature.verifyHeader(
        // as the SDK reads a body given as bytes (constructEvent, in the guard): WHATWG UTF-8,
        // a byte-order mark dropped — so the two checks always agree
        UTF8.decode(rawBody),
        signature,
        this.config.stripe.webhookSecret,
        SIGNATURE_TOLERANCE_SECONDS,
      );
    } catch {
      return false;
    }
  }

  /**
   * Records a verified event once (its id), with the outbox row that becomes its job; 400
   * VALIDATION_FAILED for a signed body that is no event (see recordable).
   */
  async receive(event: Stripe.Event): Promise<{ received: true; duplicate: boolean }> {
    const { id, type, intentId } = recordable(event);
    const stored = await this.tx.run(async () => {
      const fresh = await this.events.record({
        id,
        type,
        intentId,
        payload: event,
        at: this.clock.now(),
      });
      if (fresh) await this.outbox.add('payment.event', null, { eventId: id });
      return fresh;
    });
    return { received: true, duplicate: !stored };
  }

  /** A correctly signed Stripe-Signature header for `payload` (the simulated gateway uses it). */
  sign(payload: string): string {
    return this.stripe.webhooks.generateTestHeaderString({
      payload,
      secret: this.config.stripe.webhookSecret,
      timestamp: Math.floor(this.clock.now().getTime() / 1000),
    });
  }
}
