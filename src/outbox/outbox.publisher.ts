import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { EMAIL_OF_TOPIC, EmailJob, enqueueEmail } from '../notifications/email-job';
import {
  SETTLE_REFUND_AFTER_MS,
  SETTLE_REFUND_JOB_OPTIONS,
  settleRefundJobId,
} from '../payments/refund-settle.job';
import { JobQueues } from '../queue/job-queues';
import { JobName } from '../queue/queues';
import { OutboxEvents, OutboxRow } from './outbox-events';

/** A row whose topic this build does not know: not the event's fault (OutboxRelay). */
export class UnknownTopicError extends Error {
  override readonly name = 'UnknownTopicError';
}

/**
 * What each outbox event becomes in BullMQ. Each job's id is fixed by its event (the outbox row
 * id, the provider's event id, `cancel-intent.<order>`, `settle-refund.<refund>`,
 * `email.<order>.<kind>[.<refund>]`), so publishing a row again (a relay that died before
 * marking it, a lease overrun) adds no second job while BullMQ keeps the first — completed ones
 * only for an hour (the last 1,000): past that it does, and every handler must be idempotent
 * (guarded transitions, the email's claim row, the provider's idempotency key).
 */
@Injectable()
export class OutboxPublisher {
  constructor(
    private readonly jobs: JobQueues,
    private readonly clock: Clock,
  ) {}

  /** Whether the queues' Redis connections are up right now (answered without waiting on Redis). */
  connected(timeoutMs?: number): Promise<boolean> {
    return this.jobs.connected(timeoutMs);
  }

  async publish(row: OutboxRow): Promise<void> {
    switch (row.topic) {
      case 'order.created': {
        const event = row.payload as unknown as OutboxEvents['order.created'];
        const delay = Date.parse(event.reservationExpiresAt) - this.clock.now().getTime();
        await this.jobs.add(
          JobName.ExpireReservation,
          { orderId: event.orderId },
          // a little after the deadline, so the guarded transition sees it as due
          { jobId: row.id, delay: Math.max(0, delay) + 250 },
        );
        return;
      }
      case 'payment.event': {
        const { eventId } = row.payload as unknown as OutboxEvents['payment.event'];
        // jobId = the provider's event id: one job per event, however often it is delivered
        await this.jobs.add(JobName.ProcessPaymentEvent, { eventId }, { jobId: eventId });
        return;
      }
      case 'product.withdrawn': {
        const { productId } = row.payload as unknown as OutboxEvents['product.withdrawn'];
        await this.jobs.add(JobName.ReleaseWithdrawnReservations, { productId }, { jobId: row.id });
        return;
      }
      case 'order.paid':
      case 'order.confirmed': {
        const { orderId } = row.payload as unknown as OutboxEvents[typeof row.topic];
        return this.sendEmail({ orderId, kind: EMAIL_OF_TOPIC[row.topic] });
      }
      case 'order.cancelled': {
        const { orderId } = row.payload as unknown as OutboxEvents['order.cancelled'];
        // so the customer cannot pay a cancelled order any more (one job per order)
        await this.jobs.add(
          JobName.CancelPaymentIntent,
          { orderId },
          { jobId: `cancel-intent.${orderId}` },
        );
        return this.sendEmail({ orderId, kind: EMAIL_OF_TOPIC[row.topic] });
      }
      case 'order.refunded':
      case 'order.refund-reversed': {
        const { orderId, refundId } = row.payload as unknown as OutboxEvents[typeof row.topic];
        return this.sendEmail({ orderId, kind: EMAIL_OF_TOPIC[row.topic], refundId });
      }
      case 'refund.requested': {
        const { refundId } = row.payload as unknown as OutboxEvents['refund.requested'];
        await this.jobs.add(
          JobName.SettleRefund,
          { refundId },
          {
            jobId: settleRefundJobId(refundId),
            delay: SETTLE_REFUND_AFTER_MS,
            ...SETTLE_REFUND_JOB_OPTIONS,
          },
        );
        return;
      }
      case 'order.fulfilled':
        // No consumer yet: recorded for audit and future subscribers.
        return;
      default: {
        // a topic this build does not know (a newer API's during a rolling deploy, a renamed one):
        // never marked published with nothing done; the relay puts it back, uncounted, for a
        // worker that knows it
        const topic: never = row.topic;
        throw new UnknownTopicError(`outbox row ${row.id}: unknown topic ${JSON.stringify(topic)}`);
      }
    }
  }

  private sendEmail(job: EmailJob): Promise<void> {
    return enqueueEmail(this.jobs, job);
  }
}
