import type { ProductDto, ProductSummaryDto } from './dto/catalog.dto';
import type { ProductDetailView, ProductView } from './product.repository';

export function mapProductSummary(r: ProductView): ProductSummaryDto {
  return {
    id: r.id,
    sku: r.sku,
    name: r.name,
    price: { amount: r.priceAmount, currency: r.currency },
    availableQuantity: Math.max(0, r.available),
    rating: {
      average: r.ratingCount === 0 ? null : Math.round((r.ratingSum / r.ratingCount) * 100) / 100,
      count: r.ratingCount,
    },
    categoryId: r.categoryId,
    imageUrl: r.imageUrl,
  };
}

/**
 * A product's detail. `images`: the main image first (`imageUrl`, the first to become ready, or
 * one set by the seed), then every other ready image in the order it became ready; `urlOf`
 * turns a storage key into its public URL (ObjectStorage#publicUrl).
 */
export function mapProduct(r: ProductDetailView, urlOf: (key: string) => string): ProductDto {
  const images = [...new Set([...(r.imageUrl ? [r.imageUrl] : []), ...r.imageKeys.map(urlOf)])];
  return {
    ...mapProductSummary(r),
    description: r.description,
    images,
    active: r.active,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}
