import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryGeneratedColumn,
} from 'typeorm';
import { ProductEntity } from '../../catalog/entities/product.entity';

export type StockMovementKind = 'initial' | 'adjust' | 'reserve' | 'release' | 'commit';

/**
 * The stock ledger, `stock_movements` (migrations/1763800001000-Catalog.ts): one row per change
 * of an inventory row, so the counters can always be explained. Written only from src/inventory.
 * An order reserves, releases or commits a product at most once (`stock_movements_once_per_order`),
 * and settles it once — a release or a commit, never both (`stock_movements_settled_once`).
 */
@Entity('stock_movements')
@Index('stock_movements_product_idx', ['productId', 'id'])
@Index('stock_movements_once_per_order', ['orderId', 'productId', 'kind'], {
  unique: true,
  where: 'order_id IS NOT NULL',
})
@Index('stock_movements_settled_once', ['orderId', 'productId'], {
  unique: true,
  where: `kind IN ('release', 'commit')`,
})
@Check(
  'stock_movements_kind_check',
  `kind IN ('initial', 'adjust', 'reserve', 'release', 'commit')`,
)
export class StockMovementEntity {
  @PrimaryGeneratedColumn('identity', {
    type: 'bigint',
    generatedIdentity: 'ALWAYS',
    primaryKeyConstraintName: 'stock_movements_pkey',
  })
  id!: string;

  @Column('uuid', { name: 'product_id' })
  productId!: string;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'stock_movements_product_id_fkey' })
  product?: ProductEntity;

  @Column('text')
  kind!: StockMovementKind;

  @Column('integer', { name: 'on_hand_delta' })
  onHandDelta!: number;

  @Column('integer', { name: 'reserved_delta' })
  reservedDelta!: number;

  @Column('text', { nullable: true })
  reason!: string | null;

  /** The order that moved the stock (reserve, release, commit); no foreign key. */
  @Column('uuid', { name: 'order_id', nullable: true })
  orderId!: string | null;

  /** Who moved it (product creation, adjustments); no foreign key. */
  @Column('uuid', { name: 'actor_id', nullable: true })
  actorId!: string | null;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;
}
