import { Check, Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ProductEntity } from '../../catalog/entities/product.entity';
import { UserEntity } from '../../users/entities/user.entity';

/**
 * A line of a customer's server-side cart, `cart_items` (migrations/1763800002000-Orders.ts):
 * one per customer and product, written only from src/cart.
 */
@Entity('cart_items')
@Check('cart_items_quantity_check', `quantity BETWEEN 1 AND 1000`)
export class CartItemEntity {
  @PrimaryColumn('uuid', { name: 'user_id', primaryKeyConstraintName: 'cart_items_pkey' })
  userId!: string;

  @PrimaryColumn('uuid', { name: 'product_id', primaryKeyConstraintName: 'cart_items_pkey' })
  productId!: string;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'cart_items_user_id_fkey' })
  user?: UserEntity;

  /** The product as it is now (the cart shows current prices). */
  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'cart_items_product_id_fkey' })
  product?: ProductEntity;

  @Column('integer')
  quantity!: number;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;
}
