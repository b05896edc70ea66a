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
      return this.stripe.webhooks.constructEvent(rawBody, signature, this.config.stripe.webhookSecret, SIGNATURE_TOLERANCE_SECONDS);
    } catch {
      throw new DomainError('WEBHOOK_SIGNATURE_INVALID', 'The Stripe-Signature is invalid or stale.');
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

  /** Records a verified event once (its id), with the outbox row that becomes its job. */
  async receive(event: Stripe.Event): Promise<{ received: true; duplicate: boolean }> {
    const object = event.data.object as { id?: string; object?: string; payment_intent?: string | null };
    const intentId = object.object === 'payment_intent' ? (object.id ?? null) : (object.payment_intent ?? null);
    const stored = await this.tx.run(async () => {
      const fresh = await this.events.record({
        id: event.id,
        type: event.type,
        intentId,
        payload: event,
        at: this.clock.now(),
      });
      if (fresh) await this.outbox.add('payment.event', null, { eventId: event.id });
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
