import { Inject, Injectable, Logger } from '@nestjs/common';
import { logOrder } from '../common/logging/order-log';
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

/**
 * How long the 'sent' record is retried after the server accepted the message (a database blip
 * between the send and the record). Well inside the claim lease, so no other attempt can take
 * the delivery over and send it again while this one is still trying to record it.
 */
export const EMAIL_RECORD_RETRY_MS = EMAIL_CLAIM_LEASE_MS / 2;
const RECORD_BACKOFF_MAX_MS = 5_000;

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
 * Protocol: claim the delivery row (insert-or-claim, one guarded statement, which also records
 * the deterministic Message-ID) BEFORE talking to the mail server, send, then mark it 'sent'.
 * A 'sent' row is never sent again. A failed send records the error, frees the claim and
 * rethrows, so BullMQ retries with backoff.
 *
 * Once the server has accepted the message, only the bookkeeping is retried, never the send:
 * the 'sent' update is retried in-process with backoff (for EMAIL_RECORD_RETRY_MS, half the
 * claim lease) until it commits, so a database restart between the send and the record costs
 * a delay, not a second email.
 *
 * Trade-off: if the worker dies after the server accepted the message but before 'sent' is
 * recorded, the row stays claimed; once the lease has passed a retry takes it over. Before
 * sending again it asks the transport whether it already delivered this message (the `.eml`
 * transport knows: the file is its record) and then only records it; over SMTP it cannot know,
 * and the email goes out a second time. We accept that rare duplicate over the alternative
 * (marking before sending, which loses the email whenever the send then fails). The duplicate
 * carries the same deterministic Message-ID, so it is recognisable (and many clients fold it).
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
      if (existing?.status === 'sent') {
        logOrder({ orderId: job.orderId, action: 'email.already-sent', kind: job.kind });
        return 'already-sent';
      }
      throw new EmailDeliveryBusyError(key);
    }

    const message = { key, messageId, from: this.config.mail.from, to: recipient, ...content };
    // a takeover of an abandoned claim: its worker may have sent it and died before recording
    if (claim.attempt > 1 && (await this.transport.alreadyDelivered?.(message))) {
      this.logger.warn(`email ${key} was delivered by an earlier attempt: recording it, not resending`);
      await this.recordSent(claim.id, key);
      return 'already-sent';
    }
    try {
      await this.transport.send(message);
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
    await this.recordSent(claim.id, key);
    logOrder({ orderId: job.orderId, action: 'email.sent', kind: job.kind, attempt: claim.attempt });
    return 'sent';
  }

  /**
   * Records a delivery the mail server has accepted. Retried with backoff until it commits (a
   * database restart must not leave it 'sending', to be sent again once the lease passes);
   * markSent is a guarded, idempotent update, so repeating it is harmless. Gives up only after
   * EMAIL_RECORD_RETRY_MS, still well inside the claim lease.
   */
  private async recordSent(id: string, key: string): Promise<void> {
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deliveries.markSent(id, this.clock.now());
        if (attempt > 1) this.logger.log(`email ${key}: 'sent' recorded after ${attempt} attempts`);
        return;
      } catch (err) {
        const elapsed = performance.now() - started;
        if (elapsed >= EMAIL_RECORD_RETRY_MS) {
          this.logger.error(`email ${key} was sent but could not be recorded: ${String(err)}`);
          throw err;
        }
        const wait = Math.min(100 * 2 ** (attempt - 1), RECORD_BACKOFF_MAX_MS, EMAIL_RECORD_RETRY_MS - elapsed);
        this.logger.warn(`email ${key} sent; recording it failed (${String(err)}), retrying in ${Math.round(wait)} ms`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
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
