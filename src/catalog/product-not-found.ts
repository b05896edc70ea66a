import { DomainError } from '../common/errors/domain-error';

/** 404 PRODUCT_NOT_FOUND: no such product (or, where only products on sale count, one off sale). */
export const productNotFound = (): DomainError => new DomainError('PRODUCT_NOT_FOUND', 'No such product.');
