import { Check, Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../../users/entities/user.entity';
import { ProductEntity } from './product.entity';

/**
 * A customer's review of a product they bought, `reviews`
 * (migrations/1763800004000-ReviewsRecommendationsImages.ts): one per customer and product.
 * Each insert adds its rating to the product's counters in the same statement.
 */
@Entity('reviews')
@Index('reviews_one_per_customer', ['productId', 'userId'], { unique: true })
// (product_id, created_at DESC, id DESC): the newest-first pages; TypeORM cannot declare DESC
@Index('reviews_product_recent_idx', { synchronize: false })
@Check('reviews_rating_check', `rating BETWEEN 1 AND 5`)
@Check('reviews_comment_check', `length(comment) <= 4000`)
export class ReviewEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'reviews_pkey' })
  id!: string;

  @Column('uuid', { name: 'product_id' })
  productId!: string;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'reviews_product_id_fkey' })
  product?: ProductEntity;

  @Column('uuid', { name: 'user_id' })
  userId!: string;

  /** The author (their name is shown with the review). */
  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'reviews_user_id_fkey' })
  user?: UserEntity;

  @Column('smallint')
  rating!: number;

  @Column('text', { default: '' })
  comment!: string;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;
}
