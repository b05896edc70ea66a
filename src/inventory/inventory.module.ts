import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CatalogCacheModule } from '../catalog/catalog-cache.module';
import { ProductsModule } from '../catalog/products.module';
import { InventoryItemEntity } from './entities/inventory-item.entity';
import { StockMovementEntity } from './entities/stock-movement.entity';
import { InventoryAdminController } from './inventory-admin.controller';
import { InventoryRepository } from './inventory.repository';
import { InventoryService } from './inventory.service';
import { SoldOutModule } from './sold-out.module';
import { StockReservationRepository } from './stock-reservation.repository';
import { StockReservationService } from './stock-reservation.service';

/**
 * The stock: the only module that writes `inventory_items` and `stock_movements`. Orders
 * reserve, release and commit through StockReservationService; the catalog creates a new
 * product's stock through InventoryService; admins adjust it here (InventoryAdminController).
 * It asks the catalog only for what does not depend on it (ProductsModule: units sold;
 * CatalogCacheModule: the read cache's invalidation), so there is no module cycle.
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([InventoryItemEntity, StockMovementEntity]),
    SoldOutModule,
    ProductsModule,
    CatalogCacheModule,
  ],
  controllers: [InventoryAdminController],
  providers: [
    InventoryRepository,
    InventoryService,
    StockReservationRepository,
    StockReservationService,
  ],
  exports: [InventoryService, StockReservationService, SoldOutModule],
})
export class InventoryModule {}
