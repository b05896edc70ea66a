import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { AppModule } from './app.module';
import { AuthModule } from './auth/auth.module';
import { CatalogModule } from './catalog/catalog.module';
import { CatalogProcessor } from './catalog/catalog.processor';
import { AppConfig } from './config/config';
import { IdempotencyModule } from './idempotency/idempotency.module';
import { MaintenanceProcessor } from './maintenance/maintenance.processor';
import { WorkerMetricsServer } from './metrics/worker-metrics.server';
import { EmailProcessor } from './notifications/email.processor';
import { NotificationsModule } from './notifications/notifications.module';
import { OrdersModule } from './orders/orders.module';
import { OrdersProcessor } from './orders/orders.processor';
import { OutboxPublisher } from './outbox/outbox.publisher';
import { PaymentsModule } from './payments/payments.module';
import { PaymentsProcessor } from './payments/payments.processor';
import { OutboxRelay } from './outbox/outbox.relay';
import { JobHandlersCheck } from './queue/job-handlers.check';
import { QueueModule } from './queue/queue.module';
import { Schedulers } from './queue/schedulers';
import { WorkerDrain } from './queue/worker-drain';

/**
 * The worker role: the same feature modules as the API plus the BullMQ processors, the outbox
 * relay and the schedulers, which only run here.
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
        OrdersModule,
        IdempotencyModule,
        CatalogModule,
        AuthModule,
        PaymentsModule.register(config),
        NotificationsModule,
      ],
      providers: [
        OutboxPublisher,
        OutboxRelay,
        OrdersProcessor,
        MaintenanceProcessor,
        CatalogProcessor,
        PaymentsProcessor,
        EmailProcessor,
        Schedulers,
        JobHandlersCheck,
        WorkerDrain,
        WorkerMetricsServer,
      ],
    };
  }
}
