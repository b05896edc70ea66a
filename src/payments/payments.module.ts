import { DynamicModule, Injectable, Logger, Module, OnApplicationBootstrap } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AppConfig, isTestKey } from '../config/config';
import { OrderEntity } from '../orders/entities/order.entity';
import { ProductsModule } from '../catalog/products.module';
import { OrdersModule } from '../orders/orders.module';
import { DevPaymentsService } from './dev-payments.service';
import { PaymentEntity } from './entities/payment.entity';
import { PaymentDisputeEntity } from './entities/payment-dispute.entity';
import { PaymentOrphanReportEntity } from './entities/payment-orphan-report.entity';
import { PaymentOrphanSweepEntity } from './entities/payment-orphan-sweep.entity';
import { RefundEntity } from './entities/refund.entity';
import { SimulatedPaymentIntentEntity } from './entities/simulated-payment-intent.entity';
import { SimulatedRefundEntity } from './entities/simulated-refund.entity';
import { WebhookEventEntity } from './entities/webhook-event.entity';
import { paymentGatewayProviders } from './payment-gateway.providers';
import { OverdueOrders } from './overdue-orders.service';
import { DisputeRepository } from './dispute.repository';
import { PaymentFinalizer } from './payment-finalizer.service';
import { PaymentOrphans } from './payment-orphans';
import { PaymentOrphanSweep } from './payment-orphan-sweep';
import { PaymentOrphanSweepRepository } from './payment-orphan-sweep.repository';
import { PaymentRepository } from './payment.repository';
import { AdminRefundsService } from './admin-refunds.service';
import { AdminRefundsController } from './admin-refunds.controller';
import { DevPaymentsController } from './dev-payments.controller';
import { PaymentsController } from './payments.controller';
import { StripeWebhookController } from './stripe-webhook.controller';
import { RefundRepository } from './refund.repository';
import { RefundsService } from './refunds.service';
import { PaymentsService } from './payments.service';
import { ShopIdentity } from './shop-identity';
import { WebhookEventRepository } from './webhook-event.repository';
import { WebhookEventRetention } from './webhook-event-retention';
import { WebhooksService } from './webhooks.service';

/**
 * Says at every boot, at warn, that an instance outside development takes test payments: a
 * Stripe test key is accepted there only with STRIPE_TEST_MODE=true (a staging instance), and a
 * staging `.env` copied to production booted silently, its customers' 4242 test cards "paying"
 * for real goods (operator review).
 */
@Injectable()
class TestPaymentsNotice implements OnApplicationBootstrap {
  onApplicationBootstrap(): void {
    new Logger('Payments').warn(
      'Stripe is in test mode outside development (a test key, STRIPE_TEST_MODE=true): test cards pay for orders — this instance must not take real ones',
    );
  }
}

/**
 * Payments. The gateway is chosen by configuration: Stripe when STRIPE_SECRET_KEY is set
 * (STRIPE_API_URL may point it elsewhere), otherwise — only with NODE_ENV=development — the
 * simulated one with its dev-only confirm route. Anywhere else a missing key stops the boot
 * (loadConfig already refuses it; this is the last line of defence).
 */
@Module({})
export class PaymentsModule {
  static register(config: AppConfig): DynamicModule {
    const stripeKey = config.stripe.secretKey;
    if (!stripeKey && !config.isDevelopment) {
      throw new Error(
        'STRIPE_SECRET_KEY is required unless NODE_ENV=development (no simulated payments)',
      );
    }
    const dev = config.isDevelopment && !stripeKey;
    return {
      module: PaymentsModule,
      imports: [
        TypeOrmModule.forFeature([
          PaymentEntity,
          RefundEntity,
          PaymentDisputeEntity,
          PaymentOrphanSweepEntity,
          PaymentOrphanReportEntity,
          WebhookEventEntity,
          SimulatedPaymentIntentEntity,
          SimulatedRefundEntity,
          OrderEntity,
        ]),
        OrdersModule,
        ProductsModule,
      ],
      controllers: [
        PaymentsController,
        AdminRefundsController,
        StripeWebhookController,
        ...(dev ? [DevPaymentsController] : []),
      ],
      providers: [
        PaymentRepository,
        RefundRepository,
        DisputeRepository,
        WebhookEventRepository,
        WebhookEventRetention,
        PaymentsService,
        RefundsService,
        AdminRefundsService,
        WebhooksService,
        PaymentFinalizer,
        PaymentOrphans,
        PaymentOrphanSweep,
        PaymentOrphanSweepRepository,
        OverdueOrders,
        ShopIdentity,
        ...paymentGatewayProviders(config),
        ...(dev ? [DevPaymentsService] : []),
        ...(stripeKey && isTestKey(stripeKey) && !config.isDevelopment ? [TestPaymentsNotice] : []),
      ],
      exports: [PaymentFinalizer, RefundsService],
    };
  }
}
