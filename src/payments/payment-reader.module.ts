import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { OrderEntity } from '../orders/entities/order.entity';
import { PaymentDisputeEntity } from './entities/payment-dispute.entity';
import { PaymentEntity } from './entities/payment.entity';
import { RefundEntity } from './entities/refund.entity';
import { PaymentReader } from './payment-reader';

/**
 * The read side of payments for other features (orders, notifications): imports nothing of
 * theirs, so it breaks no cycle (PaymentsModule imports OrdersModule).
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([PaymentEntity, RefundEntity, PaymentDisputeEntity, OrderEntity]),
  ],
  providers: [PaymentReader],
  exports: [PaymentReader],
})
export class PaymentReaderModule {}
