import type { ProductDto, ProductSummaryDto } from './dto/catalog.dto';
import type { ProductDetailView, ProductSummaryView } from './product.repository';

/** Turns a storage key into its public URL (ObjectStorage#publicUrl). */
type UrlOf = (key: string) => string;

/**
 * The main image's URL: `image_url` holds an uploaded image's storage key — its URL is built
 * now, from today's STORAGE_BASE_URL — or an absolute URL (the seed's, or one written before keys
 * were kept), shown as it is.
 */
const mainImageUrl = (stored: string | null, urlOf: UrlOf): string | null =>
  stored === null ? null : /^https?:\/\//i.test(stored) ? stored : urlOf(stored);

export function mapProductSummary(r: ProductSummaryView, urlOf: UrlOf): ProductSummaryDto {
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
    imageUrl: mainImageUrl(r.imageUrl, urlOf),
  };
}

/**
 * A product's detail. `images`: the main image first (`imageUrl`, the first to become ready, or
 * one set by the seed), then every other ready image in the order it became ready; `urlOf`
 * turns a storage key into its public URL (ObjectStorage#publicUrl).
 */
export function mapProduct(r: ProductDetailView, urlOf: UrlOf): ProductDto {
  const main = mainImageUrl(r.imageUrl, urlOf);
  const images = [...new Set([...(main ? [main] : []), ...r.imageKeys.map(urlOf)])];
  return {
    ...mapProductSummary(r, urlOf),
    description: r.description,
    images,
    active: r.active,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}
