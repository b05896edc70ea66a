import { Injectable, Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';
import { JobQueues } from '../queue/job-queues';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { EmailDeliveryRepository, OwedEmail } from './email-delivery.repository';
import { EMAIL_KINDS, EmailJob, emailJobId, emailKey, enqueueEmail } from './email-job';

/**
 * How far back published email events are checked: several rounds of an email job's own retries
 * (a little over a day each) and inside the outbox's retention (7 days).
 */
export const RECONCILE_WINDOW_MS = 6 * 86_400_000;
/** An event published this recently is left to its job (normally sent within seconds). */
const RECONCILE_GRACE_MS = 60_000;
const PAGE = 500;
/**
 * How far behind a pass's start the next one begins, at the latest: an event committed late with
 * an earlier `published_at` (the database's statement time, before its transaction commits,
 * which takes seconds: statements are cut after DATABASE_QUERY_TIMEOUT_MS) is still looked at.
 */
const SETTLED_MARGIN_MS = 60 * 60_000;
/**
 * Rounds of retries (each a day of attempts) the pass gives a failed job: a mail outage of a few
 * days is outlasted, while a mailbox the server keeps refusing in a way not known to be final is
 * not tried for a week.
 */
const MAX_RECONCILER_RETRIES = 3;
/** Owed emails in a row whose job could not be looked at before a pass takes the queue for away. */
const MAX_FAILED_IN_A_ROW = 3;

/**
 * The safety net under the outbox → queue hand-off for emails. Once its event is published an
 * email lives only in Redis; a Redis that loses recent writes (a restart without persistence, a
 * failover to a replica behind) loses it for good — the outbox row says "published" and nothing
 * else remembers. Every few minutes this compares what the published events owe with the
 * deliveries recorded as sent and adds back, under the same job id, each owed email whose job
 * the queue no longer has in any state (a job still waiting, retrying or running is left alone),
 * and retries each owed email whose job failed after all its retries, three rounds at most (a
 * mail outage of up to about four days: late, not lost; longer, the job stays failed for the
 * operator). Adding is idempotent by job id and sending by the delivery's claim, so
 * a pass racing the original job sends nothing twice.
 */
@Injectable()
export class EmailReconciler {
  private readonly logger = new Logger(EmailReconciler.name);
  /**
   * Published events before this (the database's clock) were all settled — their email sent,
   * refused for good, suppressed, or owed by none — when this process last looked: the next
   * pass starts here instead of RECONCILE_WINDOW_MS back. Every 5 minutes it read 6 days of
   * events (and joined each email one to its order, customer and delivery), however few were
   * owed: after a busy week, millions of rows per pass. A final state is never owed again; a
   * restart starts from the window again.
   */
  private settledBefore?: Date;

  /** Owed emails left failed for the operator after every round: never sent, each a person's. */
  private readonly givenUp: Counter<'kind'>;

  constructor(
    private readonly deliveries: EmailDeliveryRepository,
    private readonly jobs: JobQueues,
    metrics: MetricsService,
  ) {
    this.givenUp = metrics.counter(
      'emails_given_up_total',
      'Emails owed to a customer whose job failed again after every round of retries (a day each; kind: order_confirmation, payment_receipt, cancellation, refund, refund_reversed): never sent, left failed in the queue for the operator, each counted once',
      ['kind'],
    );
    for (const kind of EMAIL_KINDS) this.givenUp.inc({ kind }, 0);
  }

  /** One pass; returns how many jobs it added back. */
  @OnJob(JobName.ReconcileEmails)
  async reconcile(): Promise<number> {
    let added = 0;
    const started = await this.deliveries.databaseNow();
    let firstOwed: Date | undefined;
    const skipped: Skipped = { count: 0, inARow: 0, looked: 0 };
    // published events whose job Redis lost, then events the relay parked as dead (never
    // published: their email was never queued; the row stays dead, for the operator — dead rows
    // are few, and marked dead long after they were written: always the whole window)
    for (const events of ['published', 'dead'] as const) {
      let after: OwedEmail | undefined;
      for (;;) {
        const owed = await this.deliveries.findUnsent({
          windowMs: RECONCILE_WINDOW_MS,
          graceMs: RECONCILE_GRACE_MS,
          limit: PAGE,
          events,
          after,
          ...(events === 'published' ? { notBefore: this.settledBefore } : {}),
        });
        for (const email of owed) {
          const outcome = await this.addBackIfLostOrSkip(email, skipped);
          if (outcome === 'added') added++;
          // (pages in event order) an email left failed for the operator after its rounds is
          // owed for good but never tried again: it must not hold every later pass back to it —
          // one address a relay keeps refusing in a way not taken as final made every pass read
          // the whole window for its six days
          if (events === 'published' && outcome !== 'given-up') firstOwed ??= email.eventAt;
        }
        if (owed.length < PAGE) break;
        after = owed[owed.length - 1];
      }
    }
    // not one owed email's job could be looked at: the queue away, unless its connection is up
    // (then those emails' own: a lone poisoned one is the common case, nothing else being owed)
    if (
      skipped.first !== undefined &&
      skipped.count === skipped.looked &&
      !(await this.jobs.connected())
    )
      throw skipped.first;
    if (skipped.first !== undefined)
      this.logger.error(
        `${skipped.count} owed email(s) whose job could not be looked at were left for the next pass (${skipped.first.message})`,
      );
    // a whole pass done: before its first owed event, and before the margin, all were settled
    const horizon = new Date(started.getTime() - SETTLED_MARGIN_MS);
    this.settledBefore = firstOwed && firstOwed < horizon ? firstOwed : horizon;
    if (added > 0) this.logger.warn(`re-added ${added} email job(s) missing from the queue`);
    return added;
  }

  /**
   * addBackIfLost, or `failed` for an email whose job could not be read or changed: logged and
   * left owed (the next pass tries it again, and starts no later than it) — one email whose job
   * Redis holds broken in a way not foreseen, or that throws for it alone, held back every other
   * owed one (each pass failed at it, in event order, for its six days); the pass then says so at
   * error. MAX_FAILED_IN_A_ROW in a row, or every one of the pass, with the queue's connection
   * down (JobQueues#connected) is the queue itself away: the pass fails, as it did.
   */
  private async addBackIfLostOrSkip(
    email: OwedEmail,
    skipped: Skipped,
  ): Promise<'added' | 'pending' | 'given-up' | 'failed'> {
    skipped.looked++;
    try {
      const outcome = await this.addBackIfLost(email);
      skipped.inARow = 0;
      return outcome;
    } catch (err) {
      // (a streak with the queue's connection up is emails of their own: the pass goes on)
      if (++skipped.inARow >= MAX_FAILED_IN_A_ROW) {
        if (!(await this.jobs.connected())) throw err;
        skipped.inARow = 0;
      }
      skipped.count++;
      skipped.first ??= err instanceof Error ? err : new Error(String(err));
      this.logger.warn(
        `owed email ${emailKey(jobOf(email))} not looked at (left for the next pass): ${String(err)}`,
      );
      return 'failed';
    }
  }

  /**
   * `added` (its job re-added or retried), `pending` (its job still on its way: owed, watched),
   * `given-up` (failed after every round: left for the operator, never retried by a pass).
   */
  private async addBackIfLost(email: OwedEmail): Promise<'added' | 'pending' | 'given-up'> {
    const job = jobOf(email);
    const existing = await this.jobs.find(JobName.SendEmail, emailJobId(job));
    const state = await existing?.getState();
    // A Redis that evicted keys (redis-loss review) leaves jobs that can never send: one whose
    // record is kept but whose place in the queue's lists is lost — never run, and taken for one
    // still on its way — and one whose record BullMQ recreated without its name and data when it
    // moved it on — each retry failed at once, "no job undefined". Removed, and added again from
    // the owed row.
    const broken =
      state === 'unknown' ||
      (state === 'failed' &&
        (existing?.name !== JobName.SendEmail || existing.data?.orderId !== job.orderId));
    if (existing && broken) {
      await existing.remove();
    } else if (existing) {
      // failed after its day of retries (a mail server or credential down longer than that) while
      // still owed — a refusal for good is recorded `rejected`, never owed: another round
      if (state !== 'failed') return 'pending';
      // A round is recorded, then the job retried: two Redis calls. A round counts once the job
      // has failed again after it — a pass killed between the two left a round recorded for a
      // failure (the same finishedOn) it never retried, and that round is given again.
      const data = existing.data;
      const unretried =
        data.reconcilerRound !== undefined && data.reconcilerRound === existing.finishedOn;
      const rounds = (data.reconcilerRetries ?? 0) - (unretried ? 1 : 0);
      if (rounds >= MAX_RECONCILER_RETRIES) {
        // left failed, for the operator — said once, at error
        if (!data.reconcilerGaveUp) {
          await existing.updateData({ ...data, reconcilerGaveUp: true });
          this.givenUp.inc({ kind: email.kind });
          this.logger.error(
            `email ${emailKey(job)} is owed and its job failed again after ${MAX_RECONCILER_RETRIES} rounds of retries: given up, left failed for the operator`,
          );
        }
        return 'given-up';
      }
      // (a fresh round waits for a live twin afresh too)
      await existing.updateData({
        ...data,
        reconcilerRetries: rounds + 1,
        reconcilerRound: existing.finishedOn,
        busyRetries: 0,
      });
      try {
        await existing.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      } catch (err) {
        // another pass (a second worker's, or one that outlasted its interval) retried it first:
        // BullMQ refuses a job no longer failed — nothing to add, and the rest of this pass goes on
        if ((await existing.getState()) !== 'failed') return 'pending';
        throw err;
      }
      this.logger.warn(
        `email ${emailKey(job)} is owed and its job had failed after its retries: retried (round ${rounds + 1} of ${MAX_RECONCILER_RETRIES})`,
      );
      return 'added';
    }
    await enqueueEmail(this.jobs, job);
    this.logger.warn(
      `email ${emailKey(job)} is owed and its job was ${existing ? 'broken (its record or its place in the queue lost)' : 'gone from the queue'}: added again`,
    );
    return 'added';
  }
}

/** The job that sends an owed email. */
function jobOf(email: OwedEmail): EmailJob {
  return {
    orderId: email.orderId,
    kind: email.kind,
    ...(email.ref ? { refundId: email.ref } : {}),
  };
}

/** A pass's owed emails whose job could not be looked at (addBackIfLostOrSkip). */
interface Skipped {
  count: number;
  inARow: number;
  /** Owed emails the pass looked at, skipped or not. */
  looked: number;
  first?: Error;
}
