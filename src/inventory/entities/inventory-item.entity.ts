import { Check, Column, Entity, JoinColumn, OneToOne, PrimaryColumn, Relation } from 'typeorm';
import { ProductEntity } from '../../catalog/entities/product.entity';

/**
 * The `inventory_items` table (migrations/1763800001000-Catalog.ts): one row per product,
 * written only from src/inventory. The CHECKs are the last word on overselling: reserved is
 * never negative and never above on-hand.
 */
@Entity('inventory_items')
@Check('inventory_on_hand_nonnegative', `on_hand >= 0`)
@Check('inventory_reserved_nonnegative', `reserved >= 0`)
@Check('inventory_reserved_within_on_hand', `reserved <= on_hand`)
export class InventoryItemEntity {
  @PrimaryColumn('uuid', { name: 'product_id', primaryKeyConstraintName: 'inventory_items_pkey' })
  productId!: string;

  @OneToOne(() => ProductEntity, (product) => product.inventory)
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'inventory_items_product_id_fkey' })
  product?: Relation<ProductEntity>;

  @Column('integer', { name: 'on_hand' })
  onHand!: number;

  @Column('integer', { default: 0 })
  reserved!: number;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;
}
