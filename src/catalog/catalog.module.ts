import { Module } from '@nestjs/common';
import { InventoryRepository } from '../inventory/inventory.repository';
import { CatalogAdminController } from './catalog-admin.controller';
import { CatalogAdminService } from './catalog-admin.service';
import { CatalogCache } from './catalog-cache';
import { CatalogController } from './catalog.controller';
import { CatalogCustomerController, StorageWebhookController } from './catalog-customer.controller';
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
