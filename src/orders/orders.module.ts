import { Module } from '@nestjs/common';
import { CartModule } from '../cart/cart.module';
import { StockReservationModule } from '../inventory/stock-reservation.module';
import { AdminOrdersController } from './admin-orders.controller';
import { CheckoutService } from './checkout.service';
import { OrderMetrics } from './order-metrics';
import { OrderRepositoryModule } from './order-repository.module';
import { OrderTransitionsService } from './order-transitions.service';
import { OrdersController } from './orders.controller';
import { OrdersService } from './orders.service';
import { ProductSnapshotRepository } from './product-snapshot.repository';
import { PurchaseLimitRepository } from './purchase-limit.repository';
import { ReservationExpiryService } from './reservation-expiry.service';

@Module({
  imports: [CartModule, StockReservationModule, OrderRepositoryModule],
  controllers: [OrdersController, AdminOrdersController],
  providers: [
    OrderMetrics,
    ProductSnapshotRepository,
    PurchaseLimitRepository,
    CheckoutService,
    OrdersService,
    OrderTransitionsService,
    ReservationExpiryService,
  ],
  exports: [OrderTransitionsService, ReservationExpiryService, OrderRepositoryModule],
})
export class OrdersModule {}
