import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import type { ObjectLiteral, SelectQueryBuilder } from 'typeorm';
import { LONG_RUNNING } from '../database/stall-aware-client';
import { TransactionHost } from '../database/transaction-host';
import { PAID_STATUSES } from '../orders/order-state-machine';
import { ProductRecommendationEntity } from './entities/product-recommendation.entity';
import { ProductEntity } from './entities/product.entity';
import { ProductView, onSale, productView } from './product.repository';

/** Recommendations written per INSERT statement when the table is recomputed. */
const INSERT_CHUNK = 1000;

/**
 * "Bought together" neighbours. They are computed from paid orders: the orders folder's
 * `orders` and `order_items` tables, read here by name (aggregate reads only, never written).
 */

/** Advisory lock class of the recomputation ('RE'): one run at a time. */
const RECOMPUTE_LOCK_CLASS = 0x5245;
/** How far back the pairs bought together are counted (paid orders placed since). */
export const RECOMMENDATION_WINDOW_DAYS = 365;
/**
 * How many different customers must have bought two products together (paid orders) before
 * either recommends the other. A pair one customer bought is their basket: "also bought" is
 * public, and a product's reviews name its buyers, so the rest of a named person's order was
 * shown to anyone (one paid order was enough). Counting customers, not orders, also keeps one
 * buyer's repeated orders from pushing a product into the list.
 */
export const RECOMMENDATION_MIN_CUSTOMERS = 3;

/**
 * The ids of the products the customer `:userId` bought in orders with a status in `:...paid`:
 * their paid orders (orders_user_recent_idx), then those orders' lines by order id
 * (order_items_pkey). Not a join of the two: the planner weighed the customer's orders against
 * reading every line in the shop, and from a few hundred orders on (a third of a percent of a
 * shop's 60,000) it read order_items whole — 218,000 lines for one customer's 6,000, 90 ms a
 * request (cost review). Handed the order ids as an array, it plans for a handful (it cannot
 * know how many) and reaches their lines by order id however many there are: the read grows
 * with the customer's own orders, never with the shop's.
 */
function boughtBy(q: SelectQueryBuilder<ObjectLiteral>): SelectQueryBuilder<ObjectLiteral> {
  return q
    .select('DISTINCT oi.product_id', 'product_id')
    .from('order_items', 'oi')
    .where(
      `oi.order_id = ANY(ARRAY(SELECT o.id FROM orders o WHERE o.user_id = :userId AND o.status IN (:...paid)))`,
    );
}

@Injectable()
export class RecommendationRepository {
  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Recomputes every product's top-K neighbours on sale from the last RECOMMENDATION_WINDOW_DAYS of
   * paid orders (scored by how many different customers bought both, at least
   * RECOMMENDATION_MIN_CUSTOMERS), replacing the table's content; null when another run is under way. Call
   * inside a transaction: readers see the old set until it commits.
   */
  async recompute(topK: number, at: Date): Promise<number | null> {
    // one run at a time (a run outlasting its interval, a stalled job run again): a second run's
    // DELETE would miss the first one's rows, committed after its snapshot, and its INSERT would
    // then hit them. A run that finds another under way leaves it the work (null) instead of
    // waiting for it — for as long as a large shop's recomputation takes, on a connection.
    const [lock] = await this.tx.query<{ taken: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${RECOMPUTE_LOCK_CLASS}, 0) AS taken`,
    );
    if (!lock?.taken) return null;
    const [neighbourOnSale, shop] = onSale('bp', this.config.currency);
    return this.tx.withManager(async (m) => {
      await m.createQueryBuilder().delete().from(ProductRecommendationEntity).execute();
      const ranked = await m
        .createQueryBuilder()
        // over a year's paid orders: on a large shop silent for longer than the ordinary statements'
        // DATABASE_QUERY_TIMEOUT_MS, which would take it for a stalled server
        .comment(LONG_RUNNING)
        .select('ranked.product_id', 'productId')
        .addSelect('ranked.recommended_id', 'recommendedId')
        .addSelect('ranked.score', 'score')
        .from(
          (pairs: SelectQueryBuilder<ObjectLiteral>) =>
            pairs
              .select('a.product_id', 'product_id')
              .addSelect('b.product_id', 'recommended_id')
              // (the different customers who bought both: a pair fewer bought is nobody's to see)
              .addSelect('count(DISTINCT o.user_id)::int', 'score')
              .addSelect(
                'row_number() OVER (PARTITION BY a.product_id ORDER BY count(DISTINCT o.user_id) DESC, b.product_id)',
                'rank',
              )
              .from('order_items', 'a')
              .innerJoin(
                'order_items',
                'b',
                'b.order_id = a.order_id AND b.product_id <> a.product_id',
              )
              // neighbours on sale only (onSale): ten taken off sale would otherwise fill the top K and
              // leave nothing to show (readers still skip one taken off sale since)
              .innerJoin('products', 'bp', `bp.id = b.product_id AND ${neighbourOnSale}`, shop)
              // the last year's paid orders (orders_status_recent_idx): over every one ever, each
              // run — every 10 min, through a sale — grew with the shop's whole history (9.5 s and
              // both cores at 500k orders)
              .innerJoin(
                'orders',
                'o',
                'o.id = a.order_id AND o.status IN (:...paid) AND o.created_at >= :since',
                {
                  paid: PAID_STATUSES,
                  since: new Date(at.getTime() - RECOMMENDATION_WINDOW_DAYS * 86_400_000),
                },
              )
              .groupBy('a.product_id')
              .addGroupBy('b.product_id')
              .having('count(DISTINCT o.user_id) >= :minCustomers', {
                minCustomers: RECOMMENDATION_MIN_CUSTOMERS,
              }),
          'ranked',
        )
        .where('ranked.rank <= :topK', { topK })
        .getRawMany<{ productId: string; recommendedId: string; score: number }>();
      const recommendations = m.getRepository(ProductRecommendationEntity);
      for (let i = 0; i < ranked.length; i += INSERT_CHUNK) {
        await recommendations.insert(
          ranked.slice(i, i + INSERT_CHUNK).map((r) => ({ ...r, computedAt: at })),
        );
      }
      return ranked.length;
    });
  }

  /**
   * The product's active neighbours, best first. Both reads skip a pair scored below
   * RECOMMENDATION_MIN_CUSTOMERS as well: a worker of an older release still running during a
   * deploy refills the table with its own pairs until it stops (rolling-deploy review). Not a
   * wall: the releases before 1763800046000 counted orders, so one customer's three orders of a
   * pair scored 3 there and would pass (diff review); those releases are behind every deployment
   * that has run that migration, and the ones since count customers.
   */
  async alsoBought(productId: string, limit: number): Promise<ProductView[]> {
    const recommendations = await this.tx.withManager((m) =>
      m
        .getRepository(ProductRecommendationEntity)
        .createQueryBuilder('r')
        .innerJoinAndSelect('r.recommended', 'p', ...onSale('p', this.config.currency))
        .innerJoinAndSelect('p.inventory', 'i')
        .where('r.productId = :productId', { productId })
        .andWhere('r.score >= :minCustomers', { minCustomers: RECOMMENDATION_MIN_CUSTOMERS })
        .orderBy('r.score', 'DESC')
        .addOrderBy('p.id')
        .limit(limit)
        .getMany(),
    );
    return recommendations.map((r) => productView(r.recommended!));
  }

  /** The products the customer bought (paid orders): what no recommendation of theirs shows. */
  async boughtBy(userId: string): Promise<string[]> {
    const rows = await this.tx.withManager((m) =>
      boughtBy(m.createQueryBuilder() as SelectQueryBuilder<ObjectLiteral>)
        .setParameters({ userId, paid: PAID_STATUSES })
        .getRawMany<{ product_id: string }>(),
    );
    return rows.map((r) => r.product_id);
  }

  /** Neighbours of everything the customer bought, minus what they bought, by summed score. */
  async forCustomer(userId: string, limit: number): Promise<ProductView[]> {
    const [productOnSale, shop] = onSale('p', this.config.currency);
    const products = await this.tx.withManager((m) =>
      m
        .getRepository(ProductEntity)
        .createQueryBuilder('p')
        // what the customer bought, read once (both conditions below ask it: as two subqueries
        // it was read twice); their neighbours by product_recommendations_pkey, from an array
        // as in boughtBy, not by reading every product's neighbours
        .addCommonTableExpression(
          boughtBy(m.createQueryBuilder() as SelectQueryBuilder<ObjectLiteral>),
          'bought',
          { materialized: true },
        )
        .innerJoinAndSelect('p.inventory', 'i')
        .innerJoin(
          (scored: SelectQueryBuilder<ObjectLiteral>) =>
            scored
              .select('r.recommended_id', 'recommended_id')
              .addSelect('sum(r.score)', 'score')
              .from(ProductRecommendationEntity, 'r')
              .where('r.product_id = ANY(ARRAY(SELECT product_id FROM bought))')
              .andWhere('r.recommended_id NOT IN (SELECT product_id FROM bought)')
              .andWhere('r.score >= :minCustomers')
              .groupBy('r.recommended_id'),
          's',
          's.recommended_id = p.id',
        )
        .where(productOnSale)
        .setParameters({
          userId,
          paid: PAID_STATUSES,
          minCustomers: RECOMMENDATION_MIN_CUSTOMERS,
          ...shop,
        })
        .orderBy('s.score', 'DESC')
        .addOrderBy('p.id')
        .limit(limit)
        .getMany(),
    );
    return products.map(productView);
  }
}
