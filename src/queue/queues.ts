import type { Job } from 'bullmq';
import type { EmailJob } from '../notifications/email-job';

/**
 * The job registry: every queue, every job, the payload each job carries (ids, never objects)
 * and the queue it runs on. Nothing else in src/ spells a queue or job name: producers add jobs
 * through `JobQueues.add(name, data)` (checked against JobPayloads), handlers are service
 * methods marked `@OnJob(name)`, and the worker refuses to boot unless every job here has
 * exactly one handler (JobHandlers).
 */
export enum QueueName {
  Orders = 'orders',
  Payments = 'payments',
  Email = 'email',
  Catalog = 'catalog',
  Maintenance = 'maintenance',
}

export const QUEUES: readonly QueueName[] = Object.values(QueueName);

export enum JobName {
  /** Cancel an unpaid order whose reservation window has passed. */
  ExpireReservation = 'orders.expire-reservation',
  /** Safety net: find and expire overdue reservations the delayed jobs missed. */
  SweepExpiredReservations = 'orders.sweep-expired',
  /** A product was taken off sale: cancel the unpaid orders of it no payment has begun for. */
  ReleaseWithdrawnReservations = 'orders.release-withdrawn',
  /** Recompute "bought together" recommendations from paid orders. */
  RecomputeRecommendations = 'catalog.recompute-recommendations',
  /** Act on a verified payment-provider event (re-reads the intent: events can be stale). */
  ProcessPaymentEvent = 'payments.process-event',
  /** The order was cancelled: cancel its unpaid intent at the gateway (a late success is refunded). */
  CancelPaymentIntent = 'payments.cancel-intent',
  /** Make sure a pending refund settles (its request may have been cut off by a fault). */
  SettleRefund = 'payments.settle-refund',
  /** Settle payments whose webhook never came (stale PAYMENT_PENDING orders). */
  ReconcilePayments = 'payments.reconcile',
  /** List what the payment provider made and raise what the database does not account for. */
  SweepPaymentOrphans = 'payments.sweep-orphans',
  /** Remove idempotency records past their expiry. */
  PurgeIdempotencyKeys = 'maintenance.purge-idempotency-keys',
  /** Remove refresh-token families that expired or were revoked long ago. */
  PurgeRefreshTokens = 'maintenance.purge-refresh-tokens',
  /** Remove published outbox rows past their retention. */
  PurgeOutbox = 'maintenance.purge-outbox',
  /** Remove payment provider events processed long ago (their payloads hold customer details). */
  PurgeWebhookEvents = 'maintenance.purge-webhook-events',
  /** Send one order email (at most once per order and kind; per refund for refunds). */
  SendEmail = 'email.send',
  /** Safety net: re-add the email jobs Redis lost (an email owed, not sent, and no job for it). */
  ReconcileEmails = 'maintenance.reconcile-emails',
  /** Safety net: settle product images whose storage notification never came. */
  ReconcileImages = 'maintenance.reconcile-images',
}

/** Nothing: the job's name says it all (scheduled sweeps). */
type NoData = Record<string, never>;

interface Payloads {
  [JobName.ExpireReservation]: { orderId: string };
  [JobName.SweepExpiredReservations]: NoData;
  [JobName.ReleaseWithdrawnReservations]: { productId: string };
  [JobName.RecomputeRecommendations]: NoData;
  [JobName.ProcessPaymentEvent]: { eventId: string };
  [JobName.CancelPaymentIntent]: { orderId: string };
  [JobName.SettleRefund]: { refundId: string };
  [JobName.ReconcilePayments]: NoData;
  [JobName.SweepPaymentOrphans]: NoData;
  [JobName.PurgeIdempotencyKeys]: NoData;
  [JobName.PurgeRefreshTokens]: NoData;
  [JobName.PurgeOutbox]: NoData;
  [JobName.PurgeWebhookEvents]: NoData;
  [JobName.SendEmail]: EmailJob & {
    /** Set by the handler only: how often it found the delivery busy (see EmailService). */
    busyRetries?: number;
    /** Set by EmailReconciler only: how often it retried the job after it failed for good. */
    reconcilerRetries?: number;
    /** Set by EmailReconciler only: the failure (its finishedOn) its last round retried. */
    reconcilerRound?: number;
    /** Set by EmailReconciler only: its rounds were spent, and it said so (once). */
    reconcilerGaveUp?: boolean;
  };
  [JobName.ReconcileEmails]: NoData;
  [JobName.ReconcileImages]: NoData;
}

/** The data each job carries (a job name missing from Payloads is a compile error here). */
export type JobPayloads = { [N in JobName]: Payloads[N] };

/** The queue each job runs on. */
export const JOB_QUEUE: Readonly<Record<JobName, QueueName>> = {
  [JobName.ExpireReservation]: QueueName.Orders,
  [JobName.SweepExpiredReservations]: QueueName.Orders,
  [JobName.ReleaseWithdrawnReservations]: QueueName.Orders,
  [JobName.RecomputeRecommendations]: QueueName.Catalog,
  [JobName.ProcessPaymentEvent]: QueueName.Payments,
  [JobName.CancelPaymentIntent]: QueueName.Payments,
  [JobName.SettleRefund]: QueueName.Payments,
  [JobName.ReconcilePayments]: QueueName.Payments,
  [JobName.SweepPaymentOrphans]: QueueName.Payments,
  [JobName.PurgeIdempotencyKeys]: QueueName.Maintenance,
  [JobName.PurgeRefreshTokens]: QueueName.Maintenance,
  [JobName.PurgeOutbox]: QueueName.Maintenance,
  [JobName.PurgeWebhookEvents]: QueueName.Maintenance,
  [JobName.SendEmail]: QueueName.Email,
  [JobName.ReconcileEmails]: QueueName.Maintenance,
  [JobName.ReconcileImages]: QueueName.Maintenance,
};

export const JOB_NAMES: readonly JobName[] = Object.values(JobName);

/** A BullMQ job of one registry name, with its payload type. */
export type JobOf<N extends JobName> = Job<JobPayloads[N], unknown, N>;

export function isJobName(name: string): name is JobName {
  return (JOB_NAMES as readonly string[]).includes(name);
}
