import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { OrderRepository } from '../orders/order.repository';
import { PaymentRepository } from './payment.repository';
import { SimulatedGateway } from './simulated.gateway';
import { WebhooksService } from './webhooks.service';

/**
 * Plays the customer's payment app against the simulated gateway: settles the intent, then
 * delivers a correctly signed, Stripe-shaped event through the real webhook verification and
 * inbox path.
 */
@Injectable()
export class DevPaymentsService {
  constructor(
    private readonly simulated: SimulatedGateway,
    private readonly payments: PaymentRepository,
    private readonly orders: OrderRepository,
    private readonly webhooks: WebhooksService,
    private readonly clock: Clock,
  ) {}

  async confirm(me: Principal, intentId: string, outcome: 'succeeded' | 'failed') {
    const payment = await this.payments.findByIntent(intentId);
    const order = payment ? await this.orders.findById(payment.orderId) : null;
    if (!payment || !order || order.userId !== me.userId) {
      throw new DomainError('NOT_FOUND', 'No such payment intent.');
    }
    const settled =
      (await this.simulated.settle(intentId, outcome)) ??
      (await this.simulated.retrieveIntent(intentId));
    const payload = JSON.stringify({
      id: `evt_sim_${randomBytes(12).toString('hex')}`,
      object: 'event',
      type:
        settled.status === 'succeeded'
          ? 'payment_intent.succeeded'
          : 'payment_intent.payment_failed',
      created: Math.floor(this.clock.now().getTime() / 1000),
      data: {
        object: {
          id: settled.id,
          object: 'payment_intent',
          status: settled.status,
          amount: settled.amount,
          currency: settled.currency.toLowerCase(),
          metadata: { orderId: settled.orderId },
        },
      },
    });
    // through the same verification as Stripe's own deliveries
    await this.webhooks.receive(
      this.webhooks.verify(Buffer.from(payload), this.webhooks.sign(payload)),
    );
    return { paymentIntentId: settled.id, status: settled.status };
  }
}
