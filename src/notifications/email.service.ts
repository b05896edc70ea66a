import { Inject, Injectable, Logger } from '@nestjs/common';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { OrderRepository } from '../orders/order.repository';
import { UserRepository } from '../users/user.repository';
import { EmailDeliveryRepository } from './email-delivery.repository';
import { EmailJob, emailKey, emailRef } from './email-job';
import { EmailContext, renderEmail } from './email-templates';
import { MailTransport } from './mail-transport';

/**
 * How long a claim protects a send in progress. Far longer than one SMTP conversation can last
 * (see SMTP_TIMEOUTS in mail-transport.ts); past it, the claimer is presumed dead.
 */
export const EMAIL_CLAIM_LEASE_MS = 5 * 60_000;

export type EmailOutcome = 'sent' | 'already-sent' | 'skipped';

/**
 * Another attempt holds a fresh claim on this delivery (a concurrent duplicate, or a worker that
 * died mid-send and whose lease has not passed yet). Thrown so BullMQ retries later; by then
 * the delivery is sent (→ 'already-sent') or its claim is stale and can be taken over.
 */
export class EmailDeliveryBusyError extends Error {
  constructor(key: string) {
    super(`email ${key} is being sent by another attempt`);
    this.name = 'EmailDeliveryBusyError';
  }
}

/**
 * Sends one order email at most once.
 *
 * Protocol: claim the delivery row (insert-or-claim, one guarded statement) BEFORE talking to
 * the mail server, send, then mark it 'sent'. A 'sent' row is never sent again. A failed send
 * records the error, frees the claim and rethrows, so BullMQ retries with backoff.
 *
 * Trade-off: if the worker dies after the server accepted the message but before 'sent' is
 * recorded, the row stays claimed; once the lease has passed a retry takes it over and the
 * email goes out a second time. We accept that rare duplicate over the alternative (marking
 * before sending, which loses the email whenever the send then fails). The duplicate carries
 * the same deterministic Message-ID, so it is recognisable (and many clients fold it).
 */
@Injectable()
export class EmailService {
  private readonly logger = new Logger(EmailService.name);

  constructor(
    private readonly deliveries: EmailDeliveryRepository,
    private readonly orders: OrderRepository,
    private readonly users: UserRepository,
    private readonly transport: MailTransport,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async send(job: EmailJob): Promise<EmailOutcome> {
    const key = emailKey(job);
    const ctx = await this.load(job);
    if (!ctx) return 'skipped';
    const { recipient, context } = ctx;
    const content = renderEmail(context);
    const messageId = `<${key}@${mailDomain(this.config.mail.from)}>`;

    const now = this.clock.now();
    const claim = await this.deliveries.claim({
      id: this.ids.uuid(),
      orderId: job.orderId,
      kind: job.kind,
      ref: emailRef(job),
      recipient,
      messageId,
      now,
      staleBefore: new Date(now.getTime() - EMAIL_CLAIM_LEASE_MS),
    });
    if (!claim) {
      const existing = await this.deliveries.find(job.orderId, job.kind, emailRef(job));
      if (existing?.status === 'sent') return 'already-sent';
      throw new EmailDeliveryBusyError(key);
    }

    try {
      await this.transport.send({
        key,
        messageId,
        from: this.config.mail.from,
        to: recipient,
        ...content,
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.logger.warn(`email ${key} attempt ${claim.attempt} failed: ${message}`);
      // if even this fails, the claim simply lapses after the lease
      await this.deliveries
        .release(claim.id, claim.attempt, message, this.clock.now())
        .catch((e: unknown) =>
          this.logger.error(`email ${key}: could not release claim: ${String(e)}`),
        );
      throw err;
    }
    await this.deliveries.markSent(claim.id, this.clock.now());
    return 'sent';
  }

  /** Everything the email needs, reloaded; null (skip) when what it is about is gone. */
  private async load(job: EmailJob): Promise<{ recipient: string; context: EmailContext } | null> {
    const key = emailKey(job);
    const order = await this.orders.findById(job.orderId);
    if (!order) {
      this.logger.warn(`email ${key} skipped: order not found`);
      return null;
    }
    const user = await this.users.findById(order.userId);
    if (!user) {
      this.logger.warn(`email ${key} skipped: customer not found`);
      return null;
    }
    const base = { order, customerName: user.name };
    if (job.kind !== 'refund') {
      return { recipient: user.email, context: { ...base, kind: job.kind } };
    }
    const refund = job.refundId ? await this.deliveries.findRefund(job.refundId) : null;
    if (!refund || refund.orderId !== order.id || refund.status === 'failed') {
      this.logger.warn(`email ${key} skipped: no such refund for this order`);
      return null;
    }
    return {
      recipient: user.email,
      context: {
        ...base,
        kind: 'refund',
        refund: { amount: refund.amount, currency: refund.currency },
      },
    };
  }
}

/** The domain of the sender address ('Shop <orders@shop.example>' → 'shop.example'). */
export function mailDomain(from: string): string {
  const match = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from);
  return match?.[1] ?? 'shop.local';
}
