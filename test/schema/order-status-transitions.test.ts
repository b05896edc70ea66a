import { randomUUID } from 'node:crypto';
import { ORDER_STATUSES, ORDER_TRANSITIONS } from '../../src/orders/order-state-machine';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * migrations/1763800055000-OrderStatusTransitions.ts: the database allows exactly the moves of
 * ORDER_TRANSITIONS (a new move added to the code and not to the database fails here).
 */
describe('the order state machine, enforced by the database', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('accepts every move of ORDER_TRANSITIONS and refuses every other change of status (23514)', async () => {
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
       VALUES ($1, $2, 'x', 'Transitions', 'customer', now(), now()) RETURNING id`,
      [randomUUID(), `transitions-${randomUUID()}@shop.example`],
    );
    const userId = rows[0].id;
    const client = await db.pool.connect();
    const accepted: string[] = [];
    try {
      for (const from of ORDER_STATUSES) {
        for (const to of ORDER_STATUSES) {
          if (from === to) continue;
          await client.query('BEGIN');
          const id = randomUUID();
          await client.query(
            `INSERT INTO orders (id, user_id, status, cancellation_reason, currency, total_amount,
                                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'INR', 100, now(), now())`,
            [id, userId, from, from === 'CANCELLED' ? 'CUSTOMER_REQUESTED' : null],
          );
          try {
            await client.query(
              `UPDATE orders SET status = $2, cancellation_reason = $3 WHERE id = $1`,
              [id, to, to === 'CANCELLED' ? 'CUSTOMER_REQUESTED' : null],
            );
            accepted.push(`${from} -> ${to}`);
          } catch (err) {
            expect({ move: `${from} -> ${to}`, code: (err as { code?: string }).code }).toEqual({
              move: `${from} -> ${to}`,
              code: '23514',
            });
          } finally {
            await client.query('ROLLBACK');
          }
        }
      }
    } catch (err) {
      client.release();
      throw err;
    }
    // a repair says so in its transaction, and may set any status
    await client.query('BEGIN');
    try {
      const id = randomUUID();
      await client.query(
        `INSERT INTO orders (id, user_id, status, cancellation_reason, currency, total_amount,
                             created_at, updated_at)
         VALUES ($1, $2, 'CANCELLED', 'CUSTOMER_REQUESTED', 'INR', 100, now(), now())`,
        [id, userId],
      );
      await client.query(`SET LOCAL shop.order_status_repair = 'on'`);
      const repaired = await client.query(
        `UPDATE orders SET status = 'PAID', cancellation_reason = NULL WHERE id = $1`,
        [id],
      );
      expect(repaired.rowCount).toBe(1);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    const allowed = ORDER_STATUSES.flatMap((from) =>
      ORDER_TRANSITIONS[from].filter((to) => to !== from).map((to) => `${from} -> ${to}`),
    );
    expect(accepted.sort()).toEqual(allowed.sort());
  });
});
