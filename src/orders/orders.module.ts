import { Module } from '@nestjs/common';
import { CartModule } from '../cart/cart.module';
import { ProductsModule } from '../catalog/products.module';
import { IdempotencyModule } from '../idempotency/idempotency.module';
import { InventoryModule } from '../inventory/inventory.module';
import { PaymentReaderModule } from '../payments/payment-reader.module';
import { AdminOrdersController } from './admin-orders.controller';
import { CheckoutService } from './checkout.service';
import { OrderMetrics } from './order-metrics';
import { OrderRepositoryModule } from './order-repository.module';
import { OrderTransitionsService } from './order-transitions.service';
import { OrdersController } from './orders.controller';
import { OrdersService } from './orders.service';
import { PurchaseLimitRepository } from './purchase-limit.repository';
import { ReservationExpiryService } from './reservation-expiry.service';

@Module({
  imports: [
    CartModule,
    ProductsModule,
    IdempotencyModule,
    InventoryModule,
    OrderRepositoryModule,
    PaymentReaderModule,
  ],
  controllers: [OrdersController, AdminOrdersController],
  providers: [
    OrderMetrics,
    PurchaseLimitRepository,
    CheckoutService,
    OrdersService,
    OrderTransitionsService,
    ReservationExpiryService,
  ],
  exports: [OrderTransitionsService, ReservationExpiryService, OrderRepositoryModule],
})
export class OrdersModule {}
