import { MigrationInterface, QueryRunner } from 'typeorm';

const STATUSES = [
  'CREATED',
  'INVENTORY_RESERVED',
  'PAYMENT_PENDING',
  'PAID',
  'CONFIRMED',
  'FULFILLED',
  'CANCELLED',
  'REFUNDED',
  'PARTIALLY_REFUNDED',
];
const REASONS = ['CUSTOMER_REQUESTED', 'PAYMENT_FAILED', 'RESERVATION_EXPIRED'];
const list = (xs: string[]) => xs.map((x) => `'${x}'`).join(', ');

/** Carts, orders with their lines and status history, idempotency records and the outbox. */
export class Orders1763800002000 implements MigrationInterface {
  name = 'Orders1763800002000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE cart_items (
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        product_id uuid NOT NULL REFERENCES products (id),
        quantity integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, product_id)
      )`);
    await q.query(`
      CREATE TABLE orders (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        status text NOT NULL CHECK (status IN (${list(STATUSES)})),
        cancellation_reason text CHECK (cancellation_reason IN (${list(REASONS)})),
        currency char(3) NOT NULL,
        total_amount bigint NOT NULL CHECK (total_amount >= 0),
        refunded_amount bigint NOT NULL DEFAULT 0,
        reservation_expires_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        CONSTRAINT orders_refund_within_total CHECK (refunded_amount BETWEEN 0 AND total_amount),
        CONSTRAINT orders_cancel_reason CHECK ((status = 'CANCELLED') = (cancellation_reason IS NOT NULL))
      )`);
    await q.query(
      `CREATE INDEX orders_user_recent_idx ON orders (user_id, created_at DESC, id DESC)`,
    );
    await q.query(
      `CREATE INDEX orders_status_recent_idx ON orders (status, created_at DESC, id DESC)`,
    );
    await q.query(`CREATE INDEX orders_recent_idx ON orders (created_at DESC, id DESC)`);
    await q.query(
      `CREATE INDEX orders_reservation_due_idx ON orders (reservation_expires_at)
       WHERE status IN ('INVENTORY_RESERVED', 'PAYMENT_PENDING')`,
    );
    await q.query(`
      CREATE TABLE order_items (
        order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        product_id uuid NOT NULL REFERENCES products (id),
        sku text NOT NULL,
        name text NOT NULL,
        quantity integer NOT NULL CHECK (quantity > 0),
        unit_price_amount bigint NOT NULL CHECK (unit_price_amount >= 0),
        line_total_amount bigint NOT NULL CHECK (line_total_amount = unit_price_amount * quantity),
        PRIMARY KEY (order_id, product_id)
      )`);
    await q.query(`CREATE INDEX order_items_product_idx ON order_items (product_id)`);
    await q.query(`
      CREATE TABLE order_status_history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        from_status text,
        to_status text NOT NULL,
        reason text,
        actor text NOT NULL,
        created_at timestamptz NOT NULL
      )`);
    await q.query(
      `CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id)`,
    );
    await q.query(`
      CREATE TABLE idempotency_keys (
        principal text NOT NULL,
        key text NOT NULL,
        method text NOT NULL,
        route text NOT NULL,
        fingerprint text NOT NULL,
        state text NOT NULL CHECK (state IN ('in_progress', 'completed')),
        response_status integer,
        response_body text,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (principal, key)
      )`);
    await q.query(`CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at)`);
    await q.query(`
      CREATE TABLE outbox (
        id uuid PRIMARY KEY,
        topic text NOT NULL,
        aggregate_id uuid,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        last_error text,
        created_at timestamptz NOT NULL,
        published_at timestamptz
      )`);
    await q.query(
      `CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE status = 'pending'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE outbox`);
    await q.query(`DROP TABLE idempotency_keys`);
    await q.query(`DROP TABLE order_status_history`);
    await q.query(`DROP TABLE order_items`);
    await q.query(`DROP TABLE orders`);
    await q.query(`DROP TABLE cart_items`);
  }
}
