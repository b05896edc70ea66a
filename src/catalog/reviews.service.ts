import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { CursorCodec } from '../common/pagination/cursor';
import { PageQueryDto } from '../common/pagination/page-query.dto';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { CatalogCache } from './catalog-cache';
import type { Payer } from './build-budget';
import { CreateReviewDto, ReviewDto, ReviewPageDto } from './dto/catalog.dto';
import { ProductRepository } from './product.repository';
import { ReviewRepository } from './review.repository';
import { productNotFound } from './product-not-found';

const reviewExists = () => new DomainError('REVIEW_EXISTS', 'You already reviewed this product.');

/** Reviews: only by customers who bought the product (paid order), once each. */
@Injectable()
export class ReviewsService {
  constructor(
    private readonly reviews: ReviewRepository,
    private readonly products: ProductRepository,
    private readonly cache: CatalogCache,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    private readonly cursors: CursorCodec,
  ) {}

  async create(me: Principal, productId: string, dto: CreateReviewDto): Promise<ReviewDto> {
    const id = this.ids.uuid();
    const at = this.clock.now();
    const review = await this.tx.run(async () => {
      if (!(await this.products.findById(productId, { activeOnly: true }))) throw productNotFound();
      // a second review is the "once" case (409) even if the purchase has since been refunded
      if (await this.reviews.hasReviewed(me.userId, productId)) throw reviewExists();
      if (!(await this.reviews.hasBought(me.userId, productId))) {
        throw new DomainError(
          'REVIEW_NOT_ALLOWED',
          'Only customers who bought this product can review it.',
        );
      }
      const inserted = await this.reviews.insert({
        id,
        productId,
        userId: me.userId,
        rating: dto.rating,
        comment: dto.comment,
        at,
      });
      if (!inserted) throw reviewExists();
      // atomic increments under the product's row lock: concurrent reviews never lose an update
      await this.products.addRating(productId, dto.rating);
      return (await this.reviews.findById(id))!; // as the listing shows it: the author's name too
    });
    // No catalog version bump: a product's rating shows on its cached pages within their TTL, as
    // units sold and availability do. The bump made every cached page of the shop — every
    // listing, every detail — a miss in every process: one customer reviewing the lines of a
    // paid order, one a quarter second, took the cache's hits from 97% to 2% (cart review). The
    // review list itself is not cached.
    return { ...review, createdAt: review.createdAt.toISOString() };
  }

  /**
   * A product's reviews; 404 for a product that does not exist or is off sale, as for the product.
   * `payer` (the client, and its IPv6 /48) pays for the read, as for a listing page it builds.
   */
  async list(productId: string, query: PageQueryDto, payer?: Payer): Promise<ReviewPageDto> {
    // (a cursor is bound to its product's reviews: another's skipped or repeated some)
    const list = `reviews of ${productId}`;
    const after = this.cursors.decode<{ t: string; i: string }>(
      query.cursor,
      { t: 'timestamp', i: 'uuid' },
      list,
      "product's reviews",
    );
    // (anonymous, uncached, any cursor: through the catalog's read gate, by the client's budget)
    const rows = await this.cache.readBounded(async () => {
      if (!(await this.products.findById(productId, { activeOnly: true }))) throw productNotFound();
      return this.reviews.page(
        productId,
        query.limit + 1,
        after ? { at: after.t, id: after.i } : null,
      );
    }, payer);
    const items = rows.slice(0, query.limit);
    const last = items[items.length - 1];
    return {
      items: items.map((r) => ({ ...r, createdAt: r.createdAt.toISOString() })),
      nextCursor:
        rows.length > query.limit && last
          ? this.cursors.encode({ t: last.createdAt.toISOString(), i: last.id }, list)
          : null,
    };
  }
}
