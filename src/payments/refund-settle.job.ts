import type { JobsOptions } from 'bullmq';

/**
 * The follow-up of every refund recorded as pending (`payments.settle-refund`, from the outbox
 * event `refund.requested` written with the refund): a little after the request, the worker
 * checks that the refund settled and, if its request was cut off (a crash, the database going
 * away between the provider's answer and our record), finishes it with the same provider key.
 * Retried with a short, capped backoff so a refund caught by an outage settles seconds after
 * recovery, not at the next minute-long sweep.
 */
export const SETTLE_REFUND_AFTER_MS = 5_000;

/** The custom backoff type (see `settleRefundBackoff`, installed on the payments worker). */
export const SETTLE_REFUND_BACKOFF = 'settle-refund';

export const SETTLE_REFUND_JOB_OPTIONS: JobsOptions = {
  attempts: 20, // about three minutes of retries; the stale-refund sweep remains the net after that
  backoff: { type: SETTLE_REFUND_BACKOFF },
};

/** One job per refund, however often its event is relayed. */
export const settleRefundJobId = (refundId: string): string => `settle-refund.${refundId}`;

/** BullMQ backoff for the custom types of the payments queue: 1, 2, 4, 8, then every 10 s. */
export function paymentsBackoff(attemptsMade: number, type?: string): number {
  if (type !== SETTLE_REFUND_BACKOFF) return 1_000;
  return Math.min(1_000 * 2 ** Math.max(0, attemptsMade - 1), 10_000);
}
