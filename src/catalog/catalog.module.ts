import { CacheModule } from '@nestjs/cache-manager';
import { Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { InventoryRepository } from '../inventory/inventory.repository';
import { CatalogAdminController } from './catalog-admin.controller';
import { CatalogAdminService } from './catalog-admin.service';
import { CatalogCache, createCatalogStore } from './catalog-cache';
import { CatalogController } from './catalog.controller';
import { CatalogCustomerController } from './catalog-customer.controller';
import { StorageWebhookController } from './storage-webhook.controller';
import { ImageRepository } from './image.repository';
import { ImagesService } from './images.service';
import { ObjectStorage } from './object-storage';
import { RecommendationRepository } from './recommendation.repository';
import { RecommendationsService } from './recommendations.service';
import { ReviewRepository } from './review.repository';
import { ReviewsService } from './reviews.service';
import { CatalogService } from './catalog.service';
import { CatalogSeeder } from './catalog.seeder';
import { ProductRepository } from './product.repository';

@Module({
  imports: [
    // the catalog cache's shared tier (Redis via Keyv); the in-process tier is CatalogCache's
    CacheModule.registerAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({ stores: [createCatalogStore(config)] }),
    }),
  ],
  controllers: [
    CatalogController,
    CatalogAdminController,
    CatalogCustomerController,
    StorageWebhookController,
  ],
  providers: [
    ProductRepository,
    InventoryRepository,
    CatalogCache,
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
  exports: [CatalogAdminService, CatalogCache, CatalogSeeder, RecommendationsService],
})
export class CatalogModule {}
