import { InjectQueue } from '@nestjs/bullmq';
import { Injectable } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { Clock } from '../common/time/clock';
import { EMAIL_JOB_OPTIONS, EmailJob, emailJobId } from '../notifications/email-job';
import { SETTLE_REFUND_AFTER_MS, SETTLE_REFUND_JOB_OPTIONS, settleRefundJobId } from '../payments/refund-settle.job';
import type { JobPayloads } from '../queue/queues';
import { OutboxEvents, OutboxRow } from './outbox-events';

/**
 * What each outbox event becomes in BullMQ. Job ids derive from the outbox row id, so
 * publishing the same row twice (a relay that died before marking it) adds no second job.
 */
@Injectable()
export class OutboxPublisher {
  constructor(
    @InjectQueue('orders') private readonly orders: Queue,
    @InjectQueue('payments') private readonly payments: Queue,
    @InjectQueue('email') private readonly email: Queue,
    private readonly clock: Clock,
  ) {}

  /**
   * Whether every queue's Redis connection is up right now. Answered from the connections'
   * state, never by waiting on Redis (a queue's commands would sit in its offline queue).
   */
  async connected(timeoutMs = 200): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const clients = Promise.all([this.orders, this.payments, this.email].map((q) => q.client));
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      const ready = await Promise.race([clients, late]);
      return ready !== null && ready.every((c) => c.status === 'ready');
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async publish(row: OutboxRow): Promise<void> {
    switch (row.topic) {
      case 'order.created': {
        const event = row.payload as unknown as OutboxEvents['order.created'];
        const delay = Date.parse(event.reservationExpiresAt) - this.clock.now().getTime();
        await this.orders.add(
          'orders.expire-reservation',
          { orderId: event.orderId },
          // a little after the deadline, so the guarded transition sees it as due
          { jobId: row.id, delay: Math.max(0, delay) + 250 },
        );
        return;
      }
      case 'payment.event': {
        const { eventId } = row.payload as unknown as OutboxEvents['payment.event'];
        // jobId = the provider's event id: one job per event, however often it is delivered
        await this.payments.add('payments.process-event', { eventId }, { jobId: eventId });
        return;
      }
      case 'order.paid': {
        const { orderId } = row.payload as unknown as OutboxEvents['order.paid'];
        return this.sendEmail({ orderId, kind: 'payment_receipt' });
      }
      case 'order.confirmed': {
        const { orderId } = row.payload as unknown as OutboxEvents['order.confirmed'];
        return this.sendEmail({ orderId, kind: 'order_confirmation' });
      }
      case 'order.cancelled': {
        const { orderId } = row.payload as unknown as OutboxEvents['order.cancelled'];
        // so the customer cannot pay a cancelled order any more (one job per order)
        await this.payments.add('payments.cancel-intent', { orderId }, { jobId: `cancel-intent.${orderId}` });
        return this.sendEmail({ orderId, kind: 'cancellation' });
      }
      case 'order.refunded': {
        const { orderId, refundId } = row.payload as unknown as OutboxEvents['order.refunded'];
        return this.sendEmail({ orderId, kind: 'refund', refundId });
      }
      case 'refund.requested': {
        const { refundId } = row.payload as unknown as OutboxEvents['refund.requested'];
        const data: JobPayloads['payments.settle-refund'] = { refundId };
        await this.payments.add('payments.settle-refund', data, {
          jobId: settleRefundJobId(refundId),
          delay: SETTLE_REFUND_AFTER_MS,
          ...SETTLE_REFUND_JOB_OPTIONS,
        });
        return;
      }
      case 'order.fulfilled':
        // No consumer yet: recorded for audit and future subscribers.
        return;
    }
  }

  /** jobId per (order, kind, refund): one job per email, however often the event is relayed. */
  private async sendEmail(job: EmailJob): Promise<void> {
    const data: JobPayloads['email.send'] = job;
    await this.email.add('email.send', data, { jobId: emailJobId(job), ...EMAIL_JOB_OPTIONS });
  }
}
