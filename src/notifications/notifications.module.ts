import { Module } from '@nestjs/common';
import { OrdersModule } from '../orders/orders.module';
import { UsersModule } from '../users/users.module';
import { EmailDeliveryLocks } from './email-delivery-locks';
import { EmailDeliveryRepository } from './email-delivery.repository';
import { EmailService } from './email.service';
import { mailTransportProvider } from './mail-transport';

/**
 * Customer emails about their orders, fed by outbox events through the `email` queue (worker
 * role: EmailService.handleSendEmail runs the `email.send` jobs).
 */
@Module({
  imports: [OrdersModule, UsersModule],
  providers: [EmailDeliveryRepository, EmailDeliveryLocks, EmailService, mailTransportProvider],
  exports: [EmailService],
})
export class NotificationsModule {}
