import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { oneLine, withoutDirectionControls } from '../common/http/single-line';
import { TransactionHost } from '../database/transaction-host';
import { PAID_STATUSES } from '../orders/order-state-machine';
import { ReviewEntity } from './entities/review.entity';

export interface Review {
  id: string;
  rating: number;
  comment: string;
  authorName: string;
  createdAt: Date;
}

/** Reviews with their author's name (the only user column a review shows). */
const withAuthor = (m: EntityManager) =>
  m
    .getRepository(ReviewEntity)
    .createQueryBuilder('r')
    .innerJoin('r.user', 'u')
    .addSelect('u.name');

const toReview = (r: ReviewEntity): Review => ({
  id: r.id,
  rating: r.rating,
  // (comments stored before direction controls were refused are shown without them)
  comment: withoutDirectionControls(r.comment),
  // on one line: names stored before SingleLine may hold breaks or direction controls
  authorName: oneLine(r.user!.name),
  createdAt: r.createdAt,
});

/** Reviews (the rating counters they keep on the product row are ProductRepository's). */
@Injectable()
export class ReviewRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Whether the customer has a paid order containing the product: a read of the orders
   * folder's `orders` and `order_items` tables, by name.
   */
  async hasBought(userId: string, productId: string): Promise<boolean> {
    const row = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .select('1', 'one')
        .from('orders', 'o')
        .innerJoin('order_items', 'i', 'i.order_id = o.id')
        .where('o.user_id = :userId', { userId })
        .andWhere('i.product_id = :productId', { productId })
        .andWhere('o.status IN (:...paid)', { paid: PAID_STATUSES })
        .limit(1)
        .getRawOne<{ one: number }>(),
    );
    return row !== undefined;
  }

  /** Whether the customer has reviewed the product (once is all they get). */
  async hasReviewed(userId: string, productId: string): Promise<boolean> {
    return this.tx.withManager((m) =>
      m.getRepository(ReviewEntity).existsBy({ userId, productId }),
    );
  }

  /** Inserts the review; false (nothing written) if this customer already reviewed the product. */
  async insert(r: {
    id: string;
    productId: string;
    userId: string;
    rating: number;
    comment: string;
    at: Date;
  }): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .insert()
        .into(ReviewEntity)
        .values({
          id: r.id,
          productId: r.productId,
          userId: r.userId,
          rating: r.rating,
          comment: r.comment,
          createdAt: r.at,
        })
        // reviews_one_per_customer (product_id, user_id)
        .orIgnore()
        .returning(['id'])
        .execute(),
    );
    return (result.raw as unknown[]).length > 0;
  }

  /** A page of the product's reviews, newest first, after the (createdAt, id) cursor. */
  async page(
    productId: string,
    limit: number,
    after: { at: string; id: string } | null,
  ): Promise<Review[]> {
    const reviews = await this.tx.withManager((m) => {
      const query = withAuthor(m).where('r.productId = :productId', { productId });
      if (after) {
        query.andWhere('(r.created_at, r.id) < (:at::timestamptz, :id::uuid)', {
          at: after.at,
          id: after.id,
        });
      }
      return query.orderBy('r.createdAt', 'DESC').addOrderBy('r.id', 'DESC').limit(limit).getMany();
    });
    return reviews.map(toReview);
  }

  /** One review as the listing shows it (its author's name included). */
  async findById(id: string): Promise<Review | null> {
    const review = await this.tx.withManager((m) =>
      withAuthor(m).where('r.id = :id', { id }).getOne(),
    );
    return review ? toReview(review) : null;
  }
}
