import { CacheModule } from '@nestjs/cache-manager';
import { Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { CatalogCache, createCatalogStore } from './catalog-cache';

/**
 * The catalog's read cache, for every module whose writes change what catalog readers see (the
 * catalog's own, the inventory's stock adjustments): they call CatalogCache.invalidate() after
 * their commit. Imports nothing of theirs, so it never closes a module cycle.
 */
@Module({
  imports: [
    // the shared tier (Redis via Keyv); the in-process tier is CatalogCache's
    CacheModule.registerAsync({
      inject: [APP_CONFIG, MetricsService],
      useFactory: (config: AppConfig, metrics: MetricsService) => ({
        stores: [createCatalogStore(config, metrics)],
      }),
    }),
  ],
  providers: [CatalogCache],
  exports: [CatalogCache],
})
export class CatalogCacheModule {}
