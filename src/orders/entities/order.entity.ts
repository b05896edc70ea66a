import { Entity, PrimaryColumn } from 'typeorm';

/**
 * PLACEHOLDER until the orders entity lands (helper E1 writes the real `OrderEntity` at this path;
 * on merge, take that version of this file). It only gives the payments, refunds and email
 * deliveries their foreign keys to `orders`; `synchronize: false` keeps the schema check from
 * comparing this partial picture of the table.
 */
@Entity('orders', { synchronize: false })
export class OrderEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'orders_pkey' })
  id!: string;
}
