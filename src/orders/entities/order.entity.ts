import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  OneToMany,
  PrimaryColumn,
  Relation,
} from 'typeorm';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../../database/column-transformers';
import { UserEntity } from '../../users/entities/user.entity';
import {
  CANCELLATION_REASONS,
  CancellationReason,
  HOLDS_RESERVATION,
  ORDER_STATUSES,
  OrderStatus,
} from '../order-state-machine';
import { OrderItemEntity } from './order-item.entity';
import { OrderStatusHistoryEntity } from './order-status-history.entity';

/** `'A', 'B'` — an SQL list of the state machine's names, for constraints and index predicates. */
const sqlList = (names: readonly string[]): string => names.map((n) => `'${n}'`).join(', ');

/** The one status that carries a cancellation reason (`requiresReason`). */
const CANCELLED: OrderStatus = 'CANCELLED';
const HOLDING = `status IN (${sqlList(HOLDS_RESERVATION)})`;

/**
 * The `orders` table (migrations/1763800002000-Orders.ts, 1763800009300-PurchaseLimits.ts): one
 * customer order, its lines (`items`) and its status history. Never serialized: OrderRepository
 * maps it to `Order`. The three keyset indexes sort `created_at DESC, id DESC`, which an entity
 * cannot say: they are declared by name only (`synchronize: false`).
 */
@Entity('orders')
@Check('orders_status_check', `status IN (${sqlList(ORDER_STATUSES)})`)
@Check(
  'orders_cancellation_reason_check',
  `cancellation_reason IN (${sqlList(CANCELLATION_REASONS)})`,
)
@Check('orders_total_amount_check', `total_amount >= 0`)
@Check('orders_refund_within_total', `refunded_amount BETWEEN 0 AND total_amount`)
@Check('orders_cancel_reason', `(status = '${CANCELLED}') = (cancellation_reason IS NOT NULL)`)
// (user_id, created_at DESC, id DESC), (status, created_at DESC, id DESC), (created_at DESC, id DESC)
@Index('orders_user_recent_idx', { synchronize: false })
@Index('orders_status_recent_idx', { synchronize: false })
@Index('orders_recent_idx', { synchronize: false })
@Index('orders_reservation_due_idx', ['reservationExpiresAt'], { where: HOLDING })
@Index('orders_user_unpaid_idx', ['userId'], { where: HOLDING })
export class OrderEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'orders_pkey' })
  id!: string;

  @Column('uuid', { name: 'user_id' })
  userId!: string;

  @ManyToOne(() => UserEntity, { nullable: false })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'orders_user_id_fkey' })
  user?: UserEntity;

  @Column('text')
  status!: OrderStatus;

  @Column('text', { name: 'cancellation_reason', nullable: true })
  cancellationReason!: CancellationReason | null;

  /**
   * When the customer's first try to start its payment failed on the shop's side (the provider
   * unreachable or refusing for a reason not the order's): such an order, never given a payment,
   * is not counted as abandoned by the purchase limits (migration 1763800045000).
   */
  @Column('timestamptz', { name: 'payment_start_failed_at', nullable: true })
  paymentStartFailedAt!: Date | null;

  @Column('char', { length: 3, transformer: CURRENCY_CODE })
  currency!: string;

  @Column('bigint', { name: 'total_amount', transformer: BIGINT_NUMBER })
  totalAmount!: number;

  @Column('bigint', { name: 'refunded_amount', default: 0, transformer: BIGINT_NUMBER })
  refundedAmount!: number;

  @Column('timestamptz', { name: 'reservation_expires_at', nullable: true })
  reservationExpiresAt!: Date | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  /**
   * When it was placed, as a draw of the `sale_epochs` sequence (1763800050000-SaleEpochs.ts: a
   * trigger draws it on insert; NULL for orders placed before): ordered against the products'
   * returns to sale without a clock.
   */
  @Column({ type: 'bigint', name: 'placed_epoch', nullable: true, insert: false, update: false })
  placedEpoch!: string | null;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;

  @OneToMany(() => OrderItemEntity, (item) => item.order)
  items?: Relation<OrderItemEntity[]>;

  @OneToMany(() => OrderStatusHistoryEntity, (change) => change.order)
  history?: Relation<OrderStatusHistoryEntity[]>;
}
