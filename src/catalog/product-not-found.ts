import { DomainError } from '../common/errors/domain-error';

/** 404 PRODUCT_NOT_FOUND: no such product (or, where only products on sale count, one off sale). */
export const productNotFound = (): DomainError =>
  new DomainError('PRODUCT_NOT_FOUND', 'No such product.');

/** 409 PRODUCT_UNAVAILABLE naming the products not on sale (unknown, off sale, another currency). */
export const productsUnavailable = (productIds: string[]): DomainError =>
  new DomainError('PRODUCT_UNAVAILABLE', 'Some products are not available.', {
    extensions: { products: productIds.map((productId) => ({ productId })) },
  });
