import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryColumn,
  Relation,
} from 'typeorm';
import { ProductEntity } from '../../catalog/entities/product.entity';
import { BIGINT_NUMBER } from '../../database/column-transformers';
import { OrderEntity } from './order.entity';

/**
 * The `order_items` table: one line of an order, with the product's sku, name and price as they
 * were at checkout (the catalog may change them later). `product_id` also references `products`
 * (`order_items_product_id_fkey`): the line keeps its own copy of what it shows.
 */
@Entity('order_items')
@Check('order_items_quantity_check', `quantity > 0`)
@Check('order_items_unit_price_amount_check', `unit_price_amount >= 0`)
@Check('order_items_check', `line_total_amount = unit_price_amount * quantity`)
@Index('order_items_product_idx', ['productId'])
export class OrderItemEntity {
  @PrimaryColumn('uuid', { name: 'order_id', primaryKeyConstraintName: 'order_items_pkey' })
  orderId!: string;

  @ManyToOne(() => OrderEntity, (order) => order.items, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'order_id', foreignKeyConstraintName: 'order_items_order_id_fkey' })
  order?: Relation<OrderEntity>;

  @PrimaryColumn('uuid', { name: 'product_id', primaryKeyConstraintName: 'order_items_pkey' })
  productId!: string;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'order_items_product_id_fkey' })
  product?: Relation<ProductEntity>;

  @Column('text')
  sku!: string;

  @Column('text')
  name!: string;

  @Column('integer')
  quantity!: number;

  @Column('bigint', { name: 'unit_price_amount', transformer: BIGINT_NUMBER })
  unitPriceAmount!: number;

  @Column('bigint', { name: 'line_total_amount', transformer: BIGINT_NUMBER })
  lineTotalAmount!: number;
}
