import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CategoryEntity } from './entities/category.entity';
import { ProductEntity } from './entities/product.entity';
import { ProductRepository } from './product.repository';
import { ProductSnapshotRepository } from './product-snapshot.repository';

/**
 * The `products` and `categories` tables' repositories, for the modules that read or count
 * products without the catalog's HTTP surface: orders (the price snapshot), inventory (units
 * sold), cart (is the product active), payments (no payment begins for a product off sale). Imports no feature module, so CatalogModule can depend
 * on those modules without a cycle.
 */
@Module({
  imports: [TypeOrmModule.forFeature([ProductEntity, CategoryEntity])],
  providers: [ProductRepository, ProductSnapshotRepository],
  exports: [ProductRepository, ProductSnapshotRepository],
})
export class ProductsModule {}
