import { DomainError } from '../common/errors/domain-error';
import type { OrderLine } from './order.model';
import type { ProductSnapshot } from '../catalog/product-snapshot.repository';
import { productsUnavailable } from '../catalog/product-not-found';

/**
 * Turns requested lines into priced order lines from catalog snapshots. Pure. Refuses
 * duplicate lines (400), unknown, inactive or foreign-currency products (409), and totals too
 * large to stay exact integers (400).
 */
export function priceLines(
  requested: { productId: string; quantity: number }[],
  products: ProductSnapshot[],
  currency: string,
): OrderLine[] {
  const seen = new Set<string>();
  const duplicates = requested.filter((l) => seen.size === seen.add(l.productId).size);
  if (duplicates.length > 0) {
    throw new DomainError('VALIDATION_FAILED', 'Each product may appear in one line only.', {
      errors: duplicates.map((d) => ({
        field: 'items',
        message: `duplicate line for product ${d.productId}`,
      })),
    });
  }
  const byId = new Map(products.map((p) => [p.id, p]));
  const unavailable = requested
    .map((l) => byId.get(l.productId))
    .map((p, i) => (!p || !p.active || p.currency !== currency ? requested[i].productId : null))
    .filter((id): id is string => id !== null);
  if (unavailable.length > 0) throw productsUnavailable(unavailable);
  const lines = requested.map((l) => {
    const p = byId.get(l.productId)!;
    return {
      productId: p.id,
      sku: p.sku,
      name: p.name,
      quantity: l.quantity,
      unitPriceAmount: p.priceAmount,
      lineTotalAmount: p.priceAmount * l.quantity,
    };
  });
  // Money stays exact: a line or an order total past 2^53 would be rounded, so it is refused (400).
  let total = 0;
  for (const line of lines) {
    total += line.lineTotalAmount;
    if (!Number.isSafeInteger(line.lineTotalAmount) || !Number.isSafeInteger(total)) {
      throw new DomainError('VALIDATION_FAILED', 'The order total is too large.', {
        errors: [
          { field: 'items', message: `the total exceeds ${Number.MAX_SAFE_INTEGER} minor units` },
        ],
      });
    }
  }
  return lines;
}
