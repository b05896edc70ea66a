import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { OrderItemEntity } from './entities/order-item.entity';
import { OrderStatusHistoryEntity } from './entities/order-status-history.entity';
import { OrderEntity } from './entities/order.entity';
import { OrderRepository } from './order.repository';

/**
 * The orders tables (their entities) and OrderRepository, the one code that writes them. Other
 * modules that only read orders import this rather than OrdersModule (catalog cannot: OrdersModule
 * imports catalog for the checkout's price snapshot). OrdersModule re-exports it.
 */
@Module({
  imports: [TypeOrmModule.forFeature([OrderEntity, OrderItemEntity, OrderStatusHistoryEntity])],
  providers: [OrderRepository],
  exports: [OrderRepository],
})
export class OrderRepositoryModule {}
