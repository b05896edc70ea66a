import type { EmailJob } from '../notifications/email-job';

/**
 * Every queue and job name, with the payload each job carries (ids, never objects).
 * A worker refuses to boot if a job name here has no handler (see JobHandlerRegistry).
 */
export const QUEUES = ['orders', 'payments', 'email', 'catalog', 'maintenance'] as const;
export type QueueName = (typeof QUEUES)[number];

export interface JobPayloads {
  /** Cancel an unpaid order whose reservation window has passed. */
  'orders.expire-reservation': { orderId: string };
  /** Safety net: find and expire overdue reservations the delayed jobs missed. */
  'orders.sweep-expired': Record<string, never>;
  /** Recompute "bought together" recommendations from paid orders. */
  'catalog.recompute-recommendations': Record<string, never>;
  /** Act on a verified payment-provider event (re-reads the intent: events can be stale). */
  'payments.process-event': { eventId: string };
  /** The order was cancelled: cancel its unpaid intent at the gateway (a late success is refunded). */
  'payments.cancel-intent': { orderId: string };
  /** Make sure a pending refund settles (its request may have been cut off by a fault). */
  'payments.settle-refund': { refundId: string };
  /** Settle payments whose webhook never came (stale PAYMENT_PENDING orders). */
  'payments.reconcile': Record<string, never>;
  /** Remove idempotency records past their expiry. */
  'maintenance.purge-idempotency-keys': Record<string, never>;
  /** Remove refresh-token families that expired or were revoked long ago. */
  'maintenance.purge-refresh-tokens': Record<string, never>;
  /** Remove published outbox rows past their retention. */
  'maintenance.purge-outbox': Record<string, never>;
  /** Send one order email (at most once per order and kind; per refund for refunds). */
  'email.send': EmailJob;
}

export type JobName = keyof JobPayloads;

export const JOB_QUEUE: Record<JobName, QueueName> = {
  'orders.expire-reservation': 'orders',
  'orders.sweep-expired': 'orders',
  'catalog.recompute-recommendations': 'catalog',
  'payments.process-event': 'payments',
  'payments.reconcile': 'payments',
  'payments.cancel-intent': 'payments',
  'payments.settle-refund': 'payments',
  'maintenance.purge-idempotency-keys': 'maintenance',
  'maintenance.purge-outbox': 'maintenance',
  'maintenance.purge-refresh-tokens': 'maintenance',
  'email.send': 'email',
};
