import type { JobsOptions } from 'bullmq';
import type { OutboxTopic } from '../outbox/outbox-events';
import type { JobQueues } from '../queue/job-queues';
import { JobName } from '../queue/queues';
import { UnansweredHandoverError } from './mail-transport';

/**
 * The emails the shop sends, one per (order, kind) — per (order, kind, refund) for a refund and
 * for the provider's reversal of one (the customer was told "refunded", and the money went back).
 */
export const EMAIL_KINDS = [
  'order_confirmation',
  'payment_receipt',
  'cancellation',
  'refund',
  'refund_reversed',
] as const;
export type EmailKind = (typeof EMAIL_KINDS)[number];

/** The kinds of which an order has one per refund: their delivery's `ref` is the refund's id. */
export type RefundEmailKind = Extract<EmailKind, 'refund' | 'refund_reversed'>;
const REFUND_EMAIL_KINDS: ReadonlySet<EmailKind> = new Set<RefundEmailKind>([
  'refund',
  'refund_reversed',
]);
export const isRefundEmailKind = (kind: EmailKind): kind is RefundEmailKind =>
  REFUND_EMAIL_KINDS.has(kind);

export function isEmailKind(kind: unknown): kind is EmailKind {
  return (EMAIL_KINDS as readonly unknown[]).includes(kind);
}

/** What an `email.send` job carries: ids only, the service reloads everything else. */
export interface EmailJob {
  orderId: string;
  kind: EmailKind;
  /**
   * Only for the refund kinds ('refund', 'refund_reversed'): an order can be refunded several
   * times, one email each.
   */
  refundId?: string;
}

/** The outbox events that owe the customer an email, and which email. */
export const EMAIL_OF_TOPIC = {
  'order.paid': 'payment_receipt',
  'order.confirmed': 'order_confirmation',
  'order.cancelled': 'cancellation',
  'order.refunded': 'refund',
  'order.refund-reversed': 'refund_reversed',
} as const satisfies Partial<Record<OutboxTopic, EmailKind>>;

/** The part of the delivery key that tells two emails of one kind apart ('' if only one). */
export function emailRef(job: EmailJob): string {
  return isRefundEmailKind(job.kind) ? (job.refundId ?? '') : '';
}

/**
 * `orderId.kind[.ref]`: names the delivery in the job id, the Message-ID and the .eml file.
 * Dots, not colons: BullMQ 5 refuses custom job ids containing ':' (unless split in exactly
 * three parts, a legacy form for repeatable jobs).
 */
export function emailKey(job: EmailJob): string {
  const ref = emailRef(job);
  return [job.orderId, job.kind, ...(ref ? [ref] : [])].join('.');
}

/** Deterministic, so relaying the same outbox event twice adds no second job. */
export function emailJobId(job: EmailJob): string {
  return `email.${emailKey(job)}`;
}

/**
 * Adds the email's job: one per (order, kind, refund), however often this runs (the outbox
 * relaying an event twice, the reconciliation adding back a job Redis lost).
 */
export async function enqueueEmail(jobs: JobQueues, job: EmailJob): Promise<void> {
  await jobs.add(JobName.SendEmail, job, { jobId: emailJobId(job), ...EMAIL_JOB_OPTIONS });
}

/** The email queue's own backoff type (emailBackoff, installed on its worker). */
export const EMAIL_BACKOFF = 'email';
const EMAIL_BACKOFF_CAP_MS = 30 * 60_000;

/**
 * Mail servers can be down for a long while (a provider's outage, an expired credential found on
 * a Sunday): 60 attempts, 2 s, 4 s … apart, then every 30 min (15 min at least after an attempt
 * that handed the message over and had no answer) — a little over a day in all — before a job
 * fails for good (a failed job stays in the failed set: removeOnFail keeps it for 7
 * days). A delivery that another live attempt is sending right now is not a failure: the job's
 * handler puts it back for EMAIL_BUSY_RETRY_MS without spending an attempt (at most
 * EMAIL_BUSY_RETRIES times).
 */
export const EMAIL_JOB_OPTIONS: Pick<JobsOptions, 'attempts' | 'backoff'> = {
  attempts: 60,
  backoff: { type: EMAIL_BACKOFF },
};

/**
 * The least wait before the retry of an attempt that handed the mail server the whole message and
 * had no answer (UnansweredHandoverError). The second such attempt takes the message for delivered
 * (UNANSWERED_HANDOVERS_LIMIT: one resend at most of a message the server may have), so that
 * resend must fall outside the incident that lost the first: a relay killed or restarted while it
 * took messages, a failover of a managed relay, a rolling restart of a relay pool — seconds to a
 * few minutes. At 2 s, then 4 s, a 10–20 s blip lost the receipt twice and it was recorded sent,
 * never delivered. 15 minutes outlasts those with room, and costs only a rare lost message a
 * quarter of an hour (the regular schedule is 17 min apart by its 10th attempt anyway); a relay
 * that drops messages for longer than that is an outage that no count of copies can tell from a
 * middlebox dropping the answer, and is taken as delivered (said at error) after its second.
 */
export const UNANSWERED_HANDOVER_RETRY_MS = 15 * 60_000;

/**
 * BullMQ backoff strategy of the email queue: 2 s doubling, capped at 30 min — at least
 * UNANSWERED_HANDOVER_RETRY_MS after an attempt that handed the message over with no answer.
 */
export function emailBackoff(attemptsMade: number, type?: string, err?: Error): number {
  if (type !== EMAIL_BACKOFF) return 2_000;
  const delay = Math.min(2_000 * 2 ** Math.max(0, attemptsMade - 1), EMAIL_BACKOFF_CAP_MS);
  return err instanceof UnansweredHandoverError
    ? Math.max(delay, UNANSWERED_HANDOVER_RETRY_MS)
    : delay;
}

/** Worker deaths under one email job before BullMQ fails it (the other queues: 2). */
export const EMAIL_MAX_STALLS = 10;

/** How long a job waits when its delivery is being sent by another attempt. */
export const EMAIL_BUSY_RETRY_MS = 2_000;
/**
 * How many such waits before the job counts a failed attempt anyway (a holder that never lets
 * go would be a bug; this keeps it visible instead of looping). 330 × 2 s, past any SMTP
 * conversation (SMTP_TIMEOUTS in mail-transport.ts: 10 minutes for the answer to the message).
 */
export const EMAIL_BUSY_RETRIES = 330;
