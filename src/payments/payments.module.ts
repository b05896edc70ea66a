import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '../config/config';
import { OrdersModule } from '../orders/orders.module';
import { DevPaymentsService } from './dev-payments.service';
import { PAYMENT_GATEWAY } from './payment-gateway';
import { PaymentFinalizer } from './payment-finalizer.service';
import { PaymentRepository } from './payment.repository';
import { DevPaymentsController, PaymentsController, StripeWebhookController } from './payments.controller';
import { PaymentsService } from './payments.service';
import { SimulatedGateway } from './simulated.gateway';
import { WebhooksService } from './webhooks.service';

/**
 * Payments. The gateway is chosen by configuration; today only the simulated one is built (a
 * STRIPE_SECRET_KEY makes the process refuse to start rather than silently simulate).
 */
@Module({})
export class PaymentsModule {
  static register(config: AppConfig): DynamicModule {
    if (config.stripe.secretKey) {
      throw new Error('STRIPE_SECRET_KEY is set, but the Stripe gateway adapter is not built yet');
    }
    const dev = !config.isProduction;
    return {
      module: PaymentsModule,
      imports: [OrdersModule],
      controllers: [PaymentsController, StripeWebhookController, ...(dev ? [DevPaymentsController] : [])],
      providers: [
        PaymentRepository,
        PaymentsService,
        WebhooksService,
        PaymentFinalizer,
        SimulatedGateway,
        { provide: PAYMENT_GATEWAY, useExisting: SimulatedGateway },
        ...(dev ? [DevPaymentsService] : []),
      ],
      exports: [PaymentFinalizer],
    };
  }
}
