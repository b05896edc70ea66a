import { Check, Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ProductEntity } from './product.entity';

/**
 * "Bought together" neighbours, `product_recommendations`
 * (migrations/1763800004000-ReviewsRecommendationsImages.ts): how many different customers bought
 * both products (paid orders; at least RECOMMENDATION_MIN_CUSTOMERS), the top ones per product,
 * recomputed as a whole by a scheduled job.
 */
@Entity('product_recommendations')
@Check('product_recommendations_score_check', `score > 0`)
@Check('product_recommendations_check', `product_id <> recommended_id`)
export class ProductRecommendationEntity {
  @PrimaryColumn('uuid', {
    name: 'product_id',
    primaryKeyConstraintName: 'product_recommendations_pkey',
  })
  productId!: string;

  @PrimaryColumn('uuid', {
    name: 'recommended_id',
    primaryKeyConstraintName: 'product_recommendations_pkey',
  })
  recommendedId!: string;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({
    name: 'product_id',
    foreignKeyConstraintName: 'product_recommendations_product_id_fkey',
  })
  product?: ProductEntity;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({
    name: 'recommended_id',
    foreignKeyConstraintName: 'product_recommendations_recommended_id_fkey',
  })
  recommended?: ProductEntity;

  @Column('integer')
  score!: number;

  @Column('timestamptz', { name: 'computed_at' })
  computedAt!: Date;
}
