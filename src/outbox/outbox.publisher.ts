import { InjectQueue } from '@nestjs/bullmq';
import { Injectable } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { Clock } from '../common/time/clock';
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
    private readonly clock: Clock,
  ) {}

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
      case 'order.cancelled':
      case 'order.paid':
      case 'order.confirmed':
      case 'order.fulfilled':
      case 'order.refunded':
        // No consumer yet: recorded for audit and future subscribers (e.g. email).
        return;
    }
  }
}
