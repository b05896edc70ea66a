import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The order state machine (src/orders/order-state-machine.ts, API.md's lifecycle) enforced by the
 * database too: a change of `orders.status` that is not one of its moves fails with 23514, as a
 * CHECK would. Every writer already moves an order with a guarded `UPDATE … WHERE status IN
 * (its sources)`; a code path that forgot the guard (a refund's own UPDATE, a repair script)
 * could move a CANCELLED order to PAID, and nothing said so (constraints review). A status left
 * as it is (a refund of a REFUNDED order's reversed refund, recorded again) is no move.
 * test/schema/order-status-transitions.test.ts checks every pair against ORDER_TRANSITIONS.
 *
 * A repair that must set a status outside the moves says so in its own transaction:
 * `SET LOCAL shop.order_status_repair = 'on'` (docs/ARCHITECTURE.md; test fixtures that place an order
 * in a state directly do the same: test/support/order-status.ts). No code path of the
 * application sets it.
 */
const MOVES: [string, string][] = [
  ['CREATED', 'INVENTORY_RESERVED'],
  ['CREATED', 'CANCELLED'],
  ['INVENTORY_RESERVED', 'PAYMENT_PENDING'],
  ['INVENTORY_RESERVED', 'CANCELLED'],
  ['PAYMENT_PENDING', 'PAID'],
  ['PAYMENT_PENDING', 'CANCELLED'],
  ['PAID', 'CONFIRMED'],
  ['PAID', 'REFUNDED'],
  ['PAID', 'PARTIALLY_REFUNDED'],
  ['CONFIRMED', 'FULFILLED'],
  ['CONFIRMED', 'REFUNDED'],
  ['CONFIRMED', 'PARTIALLY_REFUNDED'],
  ['FULFILLED', 'REFUNDED'],
  ['FULFILLED', 'PARTIALLY_REFUNDED'],
  ['PARTIALLY_REFUNDED', 'REFUNDED'],
];

export class OrderStatusTransitions1763800055000 implements MigrationInterface {
  name = 'OrderStatusTransitions1763800055000';

  async up(q: QueryRunner): Promise<void> {
    const moves = MOVES.map(([from, to]) => `('${from}', '${to}')`).join(
      ',\n                     ',
    );
    await q.query(`
      CREATE FUNCTION orders_status_transition() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        IF (OLD.status, NEW.status) NOT IN (${moves})
           AND current_setting('shop.order_status_repair', true) IS DISTINCT FROM 'on' THEN
          RAISE EXCEPTION 'order % cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = '23514', CONSTRAINT = 'orders_status_transition';
        END IF;
        RETURN NEW;
      END
      $$`);
    await q.query(`
      CREATE TRIGGER orders_status_transition
        BEFORE UPDATE OF status ON orders
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION orders_status_transition()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER orders_status_transition ON orders`);
    await q.query(`DROP FUNCTION orders_status_transition()`);
  }
}
