import { Inject, Injectable, Logger } from '@nestjs/common';
import { logOrder } from '../common/logging/order-log';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import type { SessionLockHold } from '../database/advisory-lock-session';
import { OrderRepository } from '../orders/order.repository';
import { delayJob } from '../queue/delay-job';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobOf, JobPayloads } from '../queue/queues';
import { PaymentReader, REVERSED_AT_PROVIDER } from '../payments/payment-reader';
import { UserRepository } from '../users/user.repository';
import { CancellationLimits } from './cancellation-limits';
import { EmailDeliveryRepository } from './email-delivery.repository';
import {
  EMAIL_BUSY_RETRIES,
  EMAIL_BUSY_RETRY_MS,
  EmailJob,
  emailKey,
  emailRef,
  isRefundEmailKind,
} from './email-job';
import { EMAIL_LOCK_IDLE_SESSION_MS, EmailDeliveryLocks } from './email-delivery-locks';
import type { EmailDeliveryEntity } from './entities/email-delivery.entity';
import { EmailContent, EmailContext, renderEmail } from './email-templates';
import {
  MailTransport,
  OutgoingEmail,
  UNANSWERED_HANDOVER,
  UnansweredHandoverError,
} from './mail-transport';
import { PRODUCT_WITHDRAWN_ACTOR, UNCHARGEABLE_TOTAL_ACTOR } from '../orders/order-state-machine';

/**
 * How long the 'sent' record is retried after the server accepted the message (a database blip
 * between the send and the record), holding the job: the bookkeeping is retried, never the send.
 */
const EMAIL_RECORD_RETRY_MS = 2 * 60_000;
const RECORD_BACKOFF_MAX_MS = 5_000;
export type EmailOutcome = 'sent' | 'already-sent' | 'skipped' | 'rejected';

/**
 * Order statuses that make its confirmation ("we are getting it ready") untrue: not sent then. (A
 * confirmed order is never cancelled: it is refunded.)
 */
const OVERTAKEN_CONFIRMATION: ReadonlySet<string> = new Set(['REFUNDED']);

/**
 * Another attempt, alive, is sending this delivery right now (it holds the delivery's lock:
 * a concurrent duplicate of the job). Thrown so the job is retried a little later
 * (handleSendEmail delays it by seconds); by then the delivery is sent (→ 'already-sent') or, had that
 * attempt died, its lock is gone and the delivery is taken over.
 */
export class EmailDeliveryBusyError extends Error {
  constructor(key: string) {
    super(`email ${key} is being sent by another attempt`);
    this.name = 'EmailDeliveryBusyError';
  }
}

/**
 * Sends one order email at most once per Message-ID.
 *
 * Protocol: take the delivery's lock (EmailDeliveryLocks: a session-level advisory lock that
 * PostgreSQL releases when the holder's process dies), claim the delivery row (insert-or-claim,
 * one guarded statement, which also records the deterministic Message-ID) BEFORE talking to the
 * mail server, send, mark it 'sent', release the lock. A 'sent' row is never sent again. A
 * failed send records the error, frees the claim and rethrows, so BullMQ retries with backoff.
 * Under the lock, a row still 'sending' is abandoned (its attempt failed, or its worker died:
 * either way its lock is gone), so it is taken over at once — a worker killed mid-send costs the
 * ~15 s BullMQ needs to rerun the stalled job, not a lease.
 *
 * Once the server has accepted the message, only the bookkeeping is retried, never the send:
 * the 'sent' update is retried in-process with backoff (for EMAIL_RECORD_RETRY_MS) until it
 * commits, so a database restart between the send and the record costs a delay, not a second
 * email.
 *
 * If 'sent' is never recorded — the worker dies after the send, or the database stays away past
 * EMAIL_RECORD_RETRY_MS — the row stays 'sending' and a later attempt takes it over. Before
 * sending again it asks the transport whether it already delivered this message (the `.eml`
 * transport's file is its record; the SMTP transport marks each message the server accepted in
 * Redis) and then only records it. Only a worker killed between the server taking the message
 * and its "250 OK" reaching us (or a Redis that refused the mark) sends it a second time — with
 * the same deterministic Message-ID, so it is the same message (RFC 5322) and mail clients fold
 * it. We accept that rare redelivery over the alternative (marking before sending, which loses
 * the email whenever the send then fails).
 */
@Injectable()
export class EmailService {
  private readonly logger = new Logger(EmailService.name);

  constructor(
    private readonly deliveries: EmailDeliveryRepository,
    private readonly locks: EmailDeliveryLocks,
    private readonly orders: OrderRepository,
    private readonly users: UserRepository,
    private readonly payments: PaymentReader,
    private readonly cancellations: CancellationLimits,
    private readonly transport: MailTransport,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async send(job: EmailJob): Promise<EmailOutcome> {
    const key = emailKey(job);
    const ctx = await this.load(job);
    if (!ctx) return 'skipped';
    const { recipient, context, status } = ctx;
    const content = renderEmail(context);
    const messageId = this.messageIdOf(key);

    const hold = await this.locks.tryHold(key);
    if (!hold) {
      const existing = await this.deliveries.find(job.orderId, job.kind, emailRef(job));
      if (existing?.status === 'sent') return 'already-sent';
      throw new EmailDeliveryBusyError(key);
    }
    try {
      // "confirmed, we are getting it ready" for an order refunded since (its job
      // retried through a mail outage, the refund's email going out first): recorded, not sent
      const stale = job.kind === 'order_confirmation' && OVERTAKEN_CONFIRMATION.has(status);
      const suppressed = stale
        ? `order ${status} before it went out`
        : job.kind === 'refund_reversed'
          ? await this.refundNeverTold(job, recipient)
          : null;
      return await this.sendHolding(job, key, messageId, recipient, content, hold, suppressed);
    } finally {
      await hold.release();
    }
  }

  private async sendHolding(
    job: EmailJob,
    key: string,
    messageId: string,
    recipient: string,
    content: EmailContent,
    hold: SessionLockHold,
    suppressed: string | null,
  ): Promise<EmailOutcome> {
    const claim = await this.deliveries.claim({
      id: this.ids.uuid(),
      orderId: job.orderId,
      kind: job.kind,
      ref: emailRef(job),
      recipient,
      messageId,
      now: this.clock.now(),
    });
    if (!claim) {
      // sent, refused for good by the mail server, or suppressed: final either way
      const final = await this.deliveries.find(job.orderId, job.kind, emailRef(job));
      if (final?.status === 'rejected' || final?.status === 'suppressed') return 'skipped';
      logOrder({ orderId: job.orderId, action: 'email.already-sent', kind: job.kind });
      return 'already-sent';
    }

    const message = { key, messageId, from: this.config.mail.from, to: recipient, ...content };
    // a takeover of an abandoned claim: its worker may have sent it and died before recording
    if (claim.attempt > 1 && (await this.deliveredBefore(claim, key, message))) {
      this.logger.warn(
        `email ${key} was delivered by an earlier attempt: recording it, not resending`,
      );
      if (await this.recordSent(claim, key)) await this.transport.recorded?.(message);
      return 'already-sent';
    }
    if (suppressed) {
      await this.deliveries.markSuppressed(claim.id, claim.attempt, suppressed, this.clock.now());
      this.logger.log(`email ${key} suppressed: ${suppressed}`);
      logOrder({ orderId: job.orderId, action: 'email.suppressed', kind: job.kind });
      return 'skipped';
    }
    if (
      job.kind === 'cancellation' &&
      (await this.cancellations.suppressed(claim, recipient, key))
    ) {
      // a loop of orders cancelled (or left to expire) with someone else's address, or with
      // thousands of strangers' addresses, must not turn the shop into a mail cannon: over the
      // inbox's allowance or the shop's budget for unproven inboxes, recorded and never sent
      logOrder({ orderId: job.orderId, action: 'email.suppressed', kind: job.kind });
      return 'skipped';
    }
    try {
      // the lock's session ended (a database restart) since it was taken: another attempt may
      // take the delivery over now, so this one must not send
      if (!hold.held) throw new Error(`lost the lock of email ${key} before sending`);
      await this.transport.send(message);
    } catch (err) {
      // the server's reply usually quotes the address: kept out of logs and records
      const message = withoutAddresses(err instanceof Error ? err.message : String(err));
      if (isPermanentRejection(err)) {
        // a hard bounce (no such mailbox, refused as such): another try would be refused the
        // same way, a day long, and hurt the sender's standing — final, not retried, not owed
        this.logger.warn(`email ${key} refused by the mail server for good: ${message}`);
        await this.deliveries.markRejected(claim.id, claim.attempt, message, this.clock.now());
        logOrder({ orderId: job.orderId, action: 'email.rejected', kind: job.kind });
        // the job's outcome, not a failure: failed jobs are kept a week (no count: the reconciler
        // reads them), and registration proves no address — one refused mailbox per account and a
        // cancellation each loop filled a Redis that must not evict. The row holds the reason.
        return 'rejected';
      }
      this.logger.warn(`email ${key} attempt ${claim.attempt} failed: ${message}`);
      await this.releaseClaim(claim, key, message);
      // the job's failure reason is a record too (BullMQ keeps it in Redis, Bull Board shows
      // it, for a day of retries and a week after): the cleaned message, never the server's —
      // of the same kind, as the job's backoff reads it (an unanswered handover waits longer)
      const failure = `email ${key} attempt ${claim.attempt} failed: ${message}`;
      throw err instanceof UnansweredHandoverError
        ? new UnansweredHandoverError(failure)
        : new Error(failure);
    }
    // the transport's own record goes only once this attempt has recorded the delivery: were
    // it taken over meanwhile, the attempt that took it needs that record to not send again
    if (await this.recordSent(claim, key)) await this.transport.recorded?.(message);
    logOrder({
      orderId: job.orderId,
      action: 'email.sent',
      kind: job.kind,
      attempt: claim.attempt,
    });
    return 'sent';
  }

  /**
   * Why the customer is not to be told that a refund was reversed: its own email ("we have
   * refunded …") never went out — null when it was sent, or may have been (settleLeftSending).
   * Decided under that email's lock, which its job holds from before its claim to after its
   * 'sent' record: the job sending it right now is waited for (EmailDeliveryBusyError: looked at
   * again in seconds). Not being sent now, it is
   * settled here for good, as its own job will never settle it (that job skips a refund that
   * failed, and the reconciliation owes it no more): one nobody has claimed is recorded
   * suppressed (so a job that read the refund before the reversal cannot mail "refunded" after
   * this said nothing); one left 'sending' is settled by settleLeftSending.
   */
  private async refundNeverTold(job: EmailJob, recipient: string): Promise<string | null> {
    const told: EmailJob = { orderId: job.orderId, kind: 'refund', refundId: job.refundId };
    const key = emailKey(told);
    const hold = await this.locks.tryHold(key);
    if (!hold) throw new EmailDeliveryBusyError(key);
    try {
      const now = this.clock.now();
      const messageId = this.messageIdOf(key);
      const delivery =
        (await this.deliveries.find(job.orderId, 'refund', emailRef(told))) ??
        (await this.deliveries.suppressUnclaimed({
          id: this.ids.uuid(),
          orderId: job.orderId,
          kind: 'refund',
          ref: emailRef(told),
          recipient,
          messageId,
          now,
          reason: 'its refund was reversed by the provider before it went out',
        }));
      if (delivery?.status === 'sending') return await this.settleLeftSending(delivery, key, now);
      if (delivery?.status === 'sent') return null;
      return `its refund's email was never sent (${delivery?.status ?? 'no delivery'})`;
    } finally {
      await hold.release();
    }
  }

  /**
   * A refund's email found 'sending' under its lock, its refund reversed (refundNeverTold): why
   * the reversal is not to be told, or null. Claimed less than EMAIL_LOCK_IDLE_SESSION_MS ago, an
   * attempt may be sending it still — one whose lock session ended under it (a database restart)
   * goes on with its conversation — so it is waited for (EmailDeliveryBusyError). Otherwise it is
   * abandoned: recorded sent when the transport knows it was delivered (and the reversal told);
   * else suppressed — and the reversal told all the same when it may have gone out (its worker
   * died holding the claim, or a server was handed it whole and never answered, by its last
   * attempt or — the transport's count, which a later failed attempt does not overwrite — an
   * earlier one: a takeover would have sent it again), so a customer who may have read
   * "refunded" hears it did not reach them. A transport that cannot say just now fails the
   * attempt (retried with its backoff).
   */
  private async settleLeftSending(
    delivery: EmailDeliveryEntity,
    key: string,
    now: Date,
  ): Promise<string | null> {
    const claimed = delivery.claimedAt?.getTime();
    if (claimed !== undefined && now.getTime() - claimed < EMAIL_LOCK_IDLE_SESSION_MS)
      throw new EmailDeliveryBusyError(key);
    // (only its key is read of it, and its Message-ID for a log line)
    const message = {
      key,
      messageId: delivery.messageId,
      from: this.config.mail.from,
      to: delivery.recipient,
      subject: '',
      text: '',
      html: '',
    };
    if (await this.transport.alreadyDelivered?.(message)) {
      this.logger.warn(`email ${key} was delivered by an earlier attempt: recording it`);
      if (await this.deliveries.markSent(delivery.id, delivery.attempts, now))
        await this.transport.recorded?.(message);
      return null;
    }
    const maybeSent =
      claimed !== undefined ||
      (delivery.lastError ?? '').includes(UNANSWERED_HANDOVER) ||
      ((await this.transport.handedOver?.(message)) ?? false);
    const reason = `its refund was reversed by the provider before it was ${maybeSent ? 'known to be delivered' : 'delivered'}`;
    if (!(await this.deliveries.markSuppressed(delivery.id, delivery.attempts, reason, now))) {
      // settled meanwhile after all (an attempt that lost its lock recorded its send)
      const settled = await this.deliveries.find(delivery.orderId, 'refund', delivery.ref);
      if (settled?.status === 'sent') return null;
      throw new Error(`email ${key} changed while its refund's reversal settled it`);
    }
    return maybeSent ? null : `its refund's email was never sent (suppressed: ${reason})`;
  }

  /** The Message-ID of delivery `key`: the same for every attempt, so clients fold a resend. */
  private messageIdOf(key: string): string {
    return `<${key}@${mailDomain(this.config.mail.from)}>`;
  }

  /**
   * The transport's record of an earlier attempt's delivery; when it cannot be read just now, the
   * claim is given back and the attempt fails (tried again later): sending on a guess mailed the
   * customer twice whenever the record existed but did not answer.
   */
  private async deliveredBefore(
    claim: { id: string; attempt: number },
    key: string,
    message: OutgoingEmail,
  ): Promise<boolean> {
    try {
      return (await this.transport.alreadyDelivered?.(message)) ?? false;
    } catch (err) {
      const reason = `the record of an earlier attempt could not be read: ${String(err)}`;
      await this.releaseClaim(claim, key, reason);
      throw new Error(`email ${key} attempt ${claim.attempt}: ${reason}`);
    }
  }

  /**
   * Gives the claim back for a later attempt; if even this fails, the row stays 'sending'
   * unclaimed-in-fact: the next attempt takes it over under the lock.
   */
  private async releaseClaim(
    claim: { id: string; attempt: number },
    key: string,
    reason: string,
  ): Promise<void> {
    await this.deliveries
      .release(claim.id, claim.attempt, reason, this.clock.now())
      .catch((e: unknown) =>
        this.logger.error(`email ${key}: could not release claim: ${String(e)}`),
      );
  }

  /**
   * Records a delivery the mail server has accepted. Retried with backoff until it commits (a
   * database restart must not leave it 'sending', to be taken over and sent again); markSent is
   * a guarded, idempotent update (this attempt's claim only), so repeating it is harmless. Gives
   * up after EMAIL_RECORD_RETRY_MS. True when this attempt recorded it; false when another
   * attempt had taken the delivery over (it records it itself).
   */
  private async recordSent(claim: { id: string; attempt: number }, key: string): Promise<boolean> {
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const recorded = await this.deliveries.markSent(claim.id, claim.attempt, this.clock.now());
        if (attempt > 1)
          this.logger.log(
            `email ${key}: 'sent' ${recorded ? 'recorded' : 'taken over meanwhile'} after ${attempt} attempts`,
          );
        return recorded;
      } catch (err) {
        const elapsed = performance.now() - started;
        if (elapsed >= EMAIL_RECORD_RETRY_MS) {
          this.logger.error(`email ${key} was sent but could not be recorded: ${String(err)}`);
          throw err;
        }
        const wait = Math.min(
          100 * 2 ** (attempt - 1),
          RECORD_BACKOFF_MAX_MS,
          EMAIL_RECORD_RETRY_MS - elapsed,
        );
        this.logger.warn(
          `email ${key} sent; recording it failed (${String(err)}), retrying in ${Math.round(wait)} ms`,
        );
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Everything the email needs, reloaded; null (skip) when what it is about is gone. */
  private async load(
    job: EmailJob,
  ): Promise<{ recipient: string; context: EmailContext; status: string } | null> {
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
    const cancelledBy = (actor: string) =>
      order.cancellationReason === 'PAYMENT_FAILED' &&
      order.history.some((h) => h.to === 'CANCELLED' && h.actor === actor);
    const base = {
      order: {
        ...order,
        withdrawnFromSale: cancelledBy(PRODUCT_WITHDRAWN_ACTOR),
        unchargeableTotal: cancelledBy(UNCHARGEABLE_TOTAL_ACTOR),
      },
    };
    if (!isRefundEmailKind(job.kind)) {
      return { recipient: user.email, context: { ...base, kind: job.kind }, status: order.status };
    }
    const refund = job.refundId ? await this.payments.findRefund(job.refundId) : null;
    // a refund's email for one that did not fail; a reversal's for one the provider reversed
    const applies =
      job.kind === 'refund'
        ? refund?.status !== 'failed'
        : refund?.failure === REVERSED_AT_PROVIDER;
    if (!refund || refund.orderId !== order.id || !applies) {
      this.logger.warn(`email ${key} skipped: no such refund for this order`);
      return null;
    }
    return {
      recipient: user.email,
      context: {
        ...base,
        kind: job.kind,
        refund: { amount: refund.amount, currency: refund.currency },
      },
      status: order.status,
    };
  }

  /**
   * The `email.send` job. A delivery that another attempt, alive, is sending right now is not
   * a failure: the job looks again in EMAIL_BUSY_RETRY_MS without spending an attempt (nor the
   * exponential backoff meant for a mail server that is down), at most EMAIL_BUSY_RETRIES times
   * in a row (counted in the job's data); then, like any other error, it is a failed attempt —
   * after which the count starts again: it counts one wait for a live twin, not the job's life
   * (a wait used up once, by one long conversation, made every later one cost an attempt and
   * its backoff of up to 30 minutes instead of 2 s).
   */
  @OnJob(JobName.SendEmail)
  async handleSendEmail(
    data: JobPayloads[JobName.SendEmail],
    job: JobOf<JobName.SendEmail>,
    token?: string,
  ): Promise<EmailOutcome> {
    try {
      return await this.send(data);
    } catch (err) {
      const busy = data.busyRetries ?? 0;
      if (!(err instanceof EmailDeliveryBusyError) || !token || busy >= EMAIL_BUSY_RETRIES) {
        // an attempt spent: the next one waits for a twin afresh (best effort: the count only)
        if (busy > 0) await job.updateData({ ...data, busyRetries: 0 }).catch(() => undefined);
        throw err;
      }
      await job.updateData({ ...data, busyRetries: busy + 1 });
      return delayJob(job, token, Date.now() + EMAIL_BUSY_RETRY_MS);
    }
  }
}

/** The domain of the sender address ('Shop <orders@shop.example>' → 'shop.example'). */
export function mailDomain(from: string): string {
  const match = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from);
  return match?.[1] ?? 'shop.local';
}

/** A reply that names the mailbox as gone (with a 5.5.x status, as Outlook answers it). */
const MAILBOX_GONE =
  /mailbox (unavailable|not found|does not exist)|user unknown|no such (user|mailbox|recipient)|does not exist/i;

/**
 * The mail server refused the recipient's address for good: a 5xx reply to RCPT TO whose
 * enhanced status says the address is bad (5.1.x: no such mailbox, bad domain; 5.6.7 or a reply
 * naming SMTPUTF8: an internationalized address this server cannot take), or, without an
 * enhanced status, 550/551/553 not naming a policy. Anything about the shop's own account is
 * not final — a 5xx at MAIL FROM or DATA (authentication required, sender not verified, a daily
 * quota reached), 5.7.x (relaying denied, policy) or 5.4.x: retried for a day like a server that
 * is down, so mail of a misconfigured or throttled sender is late, never lost. Neither is a 4xx,
 * a refused connection or a timeout.
 */
export function isPermanentRejection(err: unknown): boolean {
  const { code, responseCode, command, response } = (err ?? {}) as {
    code?: unknown;
    responseCode?: unknown;
    command?: unknown;
    response?: unknown;
  };
  if (code !== 'EENVELOPE' || command !== 'RCPT TO') return false;
  if (typeof responseCode !== 'number' || responseCode < 500 || responseCode >= 600) return false;
  // the words of the reply without the addresses it quotes (`kate@separate.com` says nothing)
  const reply = (typeof response === 'string' ? response : '').replace(/<[^>]*>|\S+@\S+/g, ' ');
  // a policy refusal wherever its status stands (5.7.x: relaying, authentication, blocks)
  if (/\b5\.7\.\d{1,3}\b/.test(reply)) return false;
  // the enhanced status right after the reply code (`550 5.1.1 …`, `550-5.1.1 …`) or in qmail's
  // trailing `(#5.1.1)` — not any number that looks like one elsewhere (an IP address)
  const enhanced =
    /^\d{3}[ -]5\.(\d{1,3})\.(\d{1,3})\b/.exec(reply) ?? /\(#5\.(\d{1,3})\.(\d{1,3})\)/.exec(reply);
  const policy = /relay|auth|quota|limit|polic|spam|block|rate|sender|reputation|rcpthosts/i;
  // an address with non-ASCII characters (its local part: registration takes `jösé@…`) that a
  // server without SMTPUTF8 cannot take (`553 5.6.7 Must declare SMTPUTF8 …`): every retry is
  // sent the same way and refused the same way — four days of them
  if ((enhanced?.[1] === '6' && enhanced[2] === '7') || /\bSMTPUTF8\b/i.test(reply)) return true;
  if (enhanced) {
    const [, subject, detail] = enhanced;
    // 5.1.x: bad mailbox or domain — but 5.1.7/5.1.8 (and a 5.1.x naming the sender) are about
    // the shop's own address, which Postfix checks at RCPT TO
    if (subject === '1') return detail !== '7' && detail !== '8' && !/sender/i.test(reply);
    // 5.5.0 naming the mailbox (Outlook: "550 5.5.0 Requested action not taken: mailbox unavailable")
    if (subject === '5') return MAILBOX_GONE.test(reply) && !policy.test(reply);
    // Exchange Online's directory-based edge blocking of a mailbox it does not have
    if (subject === '4' && detail === '1')
      return /recipient address rejected/i.test(reply) && !/relay/i.test(reply);
    return false; // 5.4.x routing or quota, 5.2.x mailbox full, 5.3.x system
  }
  return [550, 551, 553].includes(responseCode) && !policy.test(reply);
}

/**
 * `text` with every email address in it replaced by `[address]`. A local part may hold `'` and
 * the other atext characters (`mary.o'neil@…`): only blanks, brackets, quotes and the separators
 * end it — a `'` did, and left `mary.o` in logs and job records.
 */
function withoutAddresses(text: string): string {
  return text.replace(/[^\s<>"(),;:]+@[^\s<>"'(),;:]+/g, '[address]');
}
