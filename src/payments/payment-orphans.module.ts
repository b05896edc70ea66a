import { DynamicModule, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { UserEntity } from '../users/entities/user.entity';
import { CategoryEntity } from '../catalog/entities/category.entity';
import { ProductEntity } from '../catalog/entities/product.entity';
import { Clock } from '../common/time/clock';
import { AppConfig } from '../config/config';
import { ConfigModule } from '../config/config.module';
import { DatabaseModule } from '../database/database.module';
import { SchemaCheck } from '../health/schema-check';
import { InventoryItemEntity } from '../inventory/entities/inventory-item.entity';
import { MetricsService } from '../metrics/metrics.service';
import { OrderRepositoryModule } from '../orders/order-repository.module';
import { DisputeRepository } from './dispute.repository';
import { PaymentDisputeEntity } from './entities/payment-dispute.entity';
import { PaymentEntity } from './entities/payment.entity';
import { RefundEntity } from './entities/refund.entity';
import { SimulatedPaymentIntentEntity } from './entities/simulated-payment-intent.entity';
import { SimulatedRefundEntity } from './entities/simulated-refund.entity';
import { paymentGatewayProviders } from './payment-gateway.providers';
import { PaymentOrphans } from './payment-orphans';
import { PaymentRepository } from './payment.repository';
import { RefundRepository } from './refund.repository';
import { ShopIdentity } from './shop-identity';

/**
 * What `npm run payments:orphans` boots, and nothing else: PostgreSQL (read: its statements are
 * SELECTs), the payment gateway (its lists and reads), the repositories PaymentOrphans reads and
 * the schema check every process makes of its database. Not AppModule: that one claimed the Redis
 * key prefix (`<prefix>:owner`, waiting for it or exiting 78), wrote the revocation marks again and
 * let PendingRevocations commit revocations — into a database just restored — from a command said
 * to change nothing (shop review). No Redis, no queue, no listener.
 */
@Module({})
export class PaymentOrphansModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: PaymentOrphansModule,
      imports: [
        ConfigModule.register(config),
        DatabaseModule,
        OrderRepositoryModule,
        TypeOrmModule.forFeature([
          PaymentEntity,
          RefundEntity,
          PaymentDisputeEntity,
          SimulatedPaymentIntentEntity,
          SimulatedRefundEntity,
          // (not read: the entities the orders' relations name, which TypeORM's metadata needs)
          UserEntity,
          ProductEntity,
          CategoryEntity,
          InventoryItemEntity,
        ]),
      ],
      providers: [
        Clock,
        // (the gateway counts its calls in it: a command's process is never scraped)
        MetricsService,
        SchemaCheck,
        ShopIdentity,
        PaymentRepository,
        RefundRepository,
        DisputeRepository,
        PaymentOrphans,
        ...paymentGatewayProviders(config),
      ],
    };
  }
}
