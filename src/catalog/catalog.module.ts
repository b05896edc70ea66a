import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { InventoryModule } from '../inventory/inventory.module';
import { CatalogAdminController } from './catalog-admin.controller';
import { CatalogAdminService } from './catalog-admin.service';
import { CatalogCacheModule } from './catalog-cache.module';
import { CatalogController } from './catalog.controller';
import { CatalogCustomerController } from './catalog-customer.controller';
import { CatalogSeeder } from './catalog.seeder';
import { CatalogService } from './catalog.service';
import { ProductImageEntity } from './entities/product-image.entity';
import { ProductRecommendationEntity } from './entities/product-recommendation.entity';
import { ReviewEntity } from './entities/review.entity';
import { ImageRepository } from './image.repository';
import { ImagesService } from './images.service';
import { ObjectStorage } from './object-storage';
import { ProductsModule } from './products.module';
import { RecommendationRepository } from './recommendation.repository';
import { RecommendationsService } from './recommendations.service';
import { ReviewRepository } from './review.repository';
import { ReviewsService } from './reviews.service';
import { StorageWebhookController } from './storage-webhook.controller';

/**
 * The catalog: products, categories, reviews, recommendations and images, its public reads
 * (cached) and its administration. A product's stock is the inventory's (InventoryModule).
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([ReviewEntity, ProductRecommendationEntity, ProductImageEntity]),
    ProductsModule,
    CatalogCacheModule,
    InventoryModule,
  ],
  controllers: [
    CatalogController,
    CatalogAdminController,
    CatalogCustomerController,
    StorageWebhookController,
  ],
  providers: [
    CatalogService,
    CatalogAdminService,
    CatalogSeeder,
    ReviewRepository,
    ReviewsService,
    RecommendationRepository,
    RecommendationsService,
    ImageRepository,
    ImagesService,
    ObjectStorage,
  ],
  exports: [CatalogSeeder, RecommendationsService],
})
export class CatalogModule {}
