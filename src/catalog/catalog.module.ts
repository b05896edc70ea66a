import { Module } from '@nestjs/common';
import { InventoryRepository } from '../inventory/inventory.repository';
import { CatalogAdminController } from './catalog-admin.controller';
import { CatalogAdminService } from './catalog-admin.service';
import { CatalogCache } from './catalog-cache';
import { CatalogController } from './catalog.controller';
import { CatalogService } from './catalog.service';
import { CatalogSeeder } from './catalog.seeder';
import { ProductRepository } from './product.repository';

@Module({
  controllers: [CatalogController, CatalogAdminController],
  providers: [
    ProductRepository,
    InventoryRepository,
    CatalogCache,
    CatalogService,
    CatalogAdminService,
    CatalogSeeder,
  ],
  exports: [CatalogAdminService, CatalogCache, CatalogSeeder],
})
export class CatalogModule {}
