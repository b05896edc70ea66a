import { toSafeInt } from '../common/money/safe-int';
import type { ProductDto, ProductSummaryDto } from './dto/catalog.dto';
import type { ProductRow } from './product.repository';

export function mapProductSummary(r: ProductRow): ProductSummaryDto {
  return {
    id: r.id,
    sku: r.sku,
    name: r.name,
    price: { amount: toSafeInt(r.priceAmount), currency: r.currency.trim() },
    availableQuantity: Math.max(0, r.available),
    rating: {
      average: r.ratingCount === 0 ? null : Math.round((r.ratingSum / r.ratingCount) * 100) / 100,
      count: r.ratingCount,
    },
    categoryId: r.categoryId,
    imageUrl: r.imageUrl,
  };
}

export function mapProduct(r: ProductRow): ProductDto {
  return {
    ...mapProductSummary(r),
    description: r.description,
    images: r.imageUrl ? [r.imageUrl] : [],
    active: r.active,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}
