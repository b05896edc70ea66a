import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from './config/config';
import { ConfigModule } from './config/config.module';
import { CommonModule } from './common/common.module';
import { LoggingModule } from './common/logging/logging.module';
import { DatabaseModule } from './database/database.module';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { RedisModule } from './redis/redis.module';
import { KeyPrefixClaimModule } from './redis/key-prefix-claim.module';
import { SeedModule } from './seed/seed.module';
import { AuthModule } from './auth/auth.module';
import { CartModule } from './cart/cart.module';
import { CatalogModule } from './catalog/catalog.module';
import { IdempotencyModule } from './idempotency/idempotency.module';
import { OrdersModule } from './orders/orders.module';
import { OutboxModule } from './outbox/outbox.module';
import { PaymentsModule } from './payments/payments.module';
import { AdminQueuesModule } from './admin-queues/admin-queues.module';

/** Everything the API serves; the worker role imports it too (see worker.module.ts). */
@Module({})
export class AppModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.register(config),
        CommonModule,
        LoggingModule,
        DatabaseModule,
        RedisModule,
        KeyPrefixClaimModule,
        MetricsModule,
        HealthModule,
        SeedModule,
        AuthModule,
        IdempotencyModule,
        OutboxModule,
        CatalogModule,
        CartModule,
        OrdersModule,
        PaymentsModule.register(config),
        AdminQueuesModule,
      ],
    };
  }
}
