import {
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryGeneratedColumn,
  Relation,
} from 'typeorm';
import type { OrderStatus } from '../order-state-machine';
import { OrderEntity } from './order.entity';

/** The `order_status_history` table: every status an order took, who moved it and why. */
@Entity('order_status_history')
@Index('order_status_history_order_idx', ['orderId', 'id'])
export class OrderStatusHistoryEntity {
  /** bigint identity, kept as the driver's string (it only orders the history). */
  @PrimaryGeneratedColumn('identity', {
    type: 'bigint',
    generatedIdentity: 'ALWAYS',
    primaryKeyConstraintName: 'order_status_history_pkey',
  })
  id!: string;

  @Column('uuid', { name: 'order_id' })
  orderId!: string;

  @ManyToOne(() => OrderEntity, (order) => order.history, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'order_id', foreignKeyConstraintName: 'order_status_history_order_id_fkey' })
  order?: Relation<OrderEntity>;

  @Column('text', { name: 'from_status', nullable: true })
  fromStatus!: OrderStatus | null;

  @Column('text', { name: 'to_status' })
  toStatus!: OrderStatus;

  @Column('text', { nullable: true })
  reason!: string | null;

  @Column('text')
  actor!: string;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;
}
