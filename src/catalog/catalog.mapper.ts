import type { ProductDto, ProductSummaryDto } from './dto/catalog.dto';
import type { ProductView } from './product.repository';

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

export function mapProduct(r: ProductView): ProductDto {
  return {
    ...mapProductSummary(r),
    description: r.description,
    images: r.imageUrl ? [r.imageUrl] : [],
    active: r.active,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}
