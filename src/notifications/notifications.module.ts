import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { OrderEntity } from '../orders/entities/order.entity';
import { OrdersModule } from '../orders/orders.module';
import { PaymentReaderModule } from '../payments/payment-reader.module';
import { UsersModule } from '../users/users.module';
import { CancellationLimits } from './cancellation-limits';
import { EmailDeliveryEntity } from './entities/email-delivery.entity';
import { EmailDeliveryLocks } from './email-delivery-locks';
import { EmailDeliveryRepository } from './email-delivery.repository';
import { EmailReconciler } from './email-reconciler';
import { EmailService } from './email.service';
import { mailTransportProvider } from './mail-transport';

/**
 * Customer emails about their orders, fed by outbox events through the `email` queue (worker
 * role: EmailService.handleSendEmail runs the `email.send` jobs; EmailReconciler adds back the
 * jobs Redis lost).
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([EmailDeliveryEntity, OrderEntity]),
    OrdersModule,
    UsersModule,
    PaymentReaderModule,
  ],
  providers: [
    EmailDeliveryRepository,
    EmailDeliveryLocks,
    CancellationLimits,
    EmailService,
    EmailReconciler,
    mailTransportProvider,
  ],
  exports: [EmailService],
})
export class NotificationsModule {}
