import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { AppModule } from './app.module';
import { AppConfig } from './config/config';
import { MaintenanceModule } from './maintenance/maintenance.module';
import { WorkerMetricsServer } from './metrics/worker-metrics.server';
import { NotificationsModule } from './notifications/notifications.module';
import { OutboxPublisher } from './outbox/outbox.publisher';
import { OutboxRelay } from './outbox/outbox.relay';
import { paymentsBackoff } from './payments/refund-settle.job';
import { EMAIL_MAX_STALLS, emailBackoff } from './notifications/email-job';
import { JobHandlers } from './queue/job-handlers';
import { QueueModule } from './queue/queue.module';
import { JOB_NAMES, JOB_QUEUE, QueueName } from './queue/queues';
import { queueProcessors } from './queue/queue-processors';
import { ScheduledPassLocks } from './queue/scheduled-pass-locks';
import { Schedulers } from './queue/schedulers';
import { WorkerDrain } from './queue/worker-drain';
import { WorkerStart } from './queue/worker-start';

/** Jobs of the orders queue one worker process runs at once (expiries and their sweep). */
const ORDERS_QUEUE_CONCURRENCY = 4;
/**
 * Payment jobs one worker process runs at once: each asks the provider (an event's intent, a
 * refund to settle, the reconciliation's passes of up to 100 calls each), and one at a time a slow
 * provider or a long reconciliation held every `payment_intent.succeeded` — paid orders stayed
 * PAYMENT_PENDING behind it. Their handlers are guarded transitions with provider idempotency
 * keys, safe side by side (two worker processes already run them so).
 */
const PAYMENTS_QUEUE_CONCURRENCY = 4;
/**
 * Emails one worker process sends at once. One at a time, a flash sale's thousands of receipts
 * took hours (a mail conversation per message: connect, TLS, AUTH, DATA — and minutes on a
 * hung server, holding the only slot); each delivery is guarded by its own lock and claim row, so
 * several run side by side safely.
 */
const EMAIL_QUEUE_CONCURRENCY = 4;
/**
 * Housekeeping passes one worker process runs at once: each of its kinds beside the others (a
 * pass never beside itself: ScheduledPassLocks). One at a time, the image reconciliation against
 * a slow store (2,000 lookups of up to 5 s each) or a purge after a sale held the emails' safety
 * net (`maintenance.reconcile-emails`, every 5 minutes) behind it for as long as it took.
 */
const MAINTENANCE_QUEUE_CONCURRENCY = JOB_NAMES.filter(
  (name) => JOB_QUEUE[name] === QueueName.Maintenance,
).length;

/**
 * The worker role: the API's modules (AppModule) plus the worker-only ones (emails,
 * housekeeping), the queues with one processor each, the job handlers (service methods marked
 * `@OnJob`, found at boot), the outbox relay and the schedulers.
 */

@Module({})
export class WorkerModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        AppModule.register(config),
        DiscoveryModule,
        QueueModule,
        NotificationsModule,
        MaintenanceModule,
      ],
      providers: [
        OutboxPublisher,
        OutboxRelay,
        ...queueProcessors({
          // several jobs at once (their handlers are guarded transitions, safe side by side): an
          // expiry that asks a slow payment provider about an intent (seconds) must not hold the
          // expiry of unpaid orders, nor the sweep, behind it
          [QueueName.Orders]: { concurrency: ORDERS_QUEUE_CONCURRENCY },
          [QueueName.Maintenance]: { concurrency: MAINTENANCE_QUEUE_CONCURRENCY },
          // the custom backoff of payments.settle-refund (SETTLE_REFUND_JOB_OPTIONS)
          [QueueName.Payments]: {
            concurrency: PAYMENTS_QUEUE_CONCURRENCY,
            settings: { backoffStrategy: paymentsBackoff },
          },
          // email.send's capped backoff, a day of retries (EMAIL_JOB_OPTIONS); an email whose
          // workers were killed under it more than twice is still sent, not failed for good (a
          // stall costs at most a resend with the same Message-ID, a failure the whole email)
          [QueueName.Email]: {
            concurrency: EMAIL_QUEUE_CONCURRENCY,
            settings: { backoffStrategy: emailBackoff },
            maxStalledCount: EMAIL_MAX_STALLS,
          },
        }),
        ScheduledPassLocks,
        JobHandlers,
        Schedulers,
        WorkerStart,
        WorkerDrain,
        WorkerMetricsServer,
      ],
    };
  }
}
