import { Module } from '@nestjs/common';
import { CartModule } from '../cart/cart.module';
import { StockReservationModule } from '../inventory/stock-reservation.module';
import { PaymentReaderModule } from '../payments/payment-reader.module';
import { AdminOrdersController } from './admin-orders.controller';
import { CheckoutService } from './checkout.service';
import { OrderMetrics } from './order-metrics';
import { OrderRepository } from './order.repository';
import { OrderTransitionsService } from './order-transitions.service';
import { OrdersController } from './orders.controller';
import { OrdersService } from './orders.service';
import { ProductSnapshotRepository } from './product-snapshot.repository';
import { PurchaseLimitRepository } from './purchase-limit.repository';
import { ReservationExpiryService } from './reservation-expiry.service';

@Module({
  imports: [CartModule, StockReservationModule, PaymentReaderModule],
  controllers: [OrdersController, AdminOrdersController],
  providers: [
    OrderRepository,
    OrderMetrics,
    ProductSnapshotRepository,
    PurchaseLimitRepository,
    CheckoutService,
    OrdersService,
    OrderTransitionsService,
    ReservationExpiryService,
  ],
  exports: [OrderTransitionsService, ReservationExpiryService, OrderRepository],
})
export class OrdersModule {}
