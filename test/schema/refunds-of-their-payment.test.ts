import { randomUUID } from 'node:crypto';
import { Pool, type PoolClient } from 'pg';
import type { QueryRunner } from 'typeorm';
import { RefundsOfTheirPayment1763800058000 } from '../../migrations/1763800058000-RefundsOfTheirPayment';
import { insertRefund } from '../support/refunds';
import { inTransaction as transaction } from '../support/transactions';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * migrations/1763800058000-RefundsOfTheirPayment.ts: a refund is of its payment's order and
 * currency, and a payment's `refund_reserved` is the sum of its pending and succeeded refunds —
 * checked by the database at COMMIT, whatever code path writes them.
 */
describe('refunds belong to their payment', () => {
  let db: TestDatabase;
  let user: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    user = (
      await db.pool.query<{ id: string }>(
        `INSERT INTO users (email, name, role, password_hash, password_epoch)
         VALUES ('refunds@shop.test', 'n', 'customer', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
      )
    ).rows[0].id;
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** A paid order of 100.00 INR (or `currency`) and its payment, nothing refunded. */
  const paidOrder = async (currency = 'INR') => {
    const orderId = randomUUID();
    const paymentId = randomUUID();
    await db.pool.query(
      `INSERT INTO orders (id, user_id, status, currency, total_amount, created_at, updated_at)
       VALUES ($1, $2, 'CONFIRMED', $3, 10000, now(), now())`,
      [orderId, user, currency],
    );
    await db.pool.query(
      `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
       VALUES ($1, $2, 'stripe', $3, 's', 10000, $4, 'succeeded', now(), now())`,
      [paymentId, orderId, `pi_${paymentId}`, currency],
    );
    return { orderId, paymentId };
  };
  const reservedOf = async (paymentId: string) =>
    Number(
      (await db.pool.query(`SELECT refund_reserved FROM payments WHERE id = $1`, [paymentId]))
        .rows[0].refund_reserved,
    );
  /** `work` in one transaction of its own (the deferred check runs at its COMMIT). */
  const inTransaction = (work: (c: PoolClient) => Promise<unknown>) => transaction(db.pool, work);
  const refundRow = (
    c: PoolClient,
    r: { orderId: string; paymentId: string; amount: number; currency?: string; status?: string },
  ) =>
    c.query(
      `INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason, actor, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'requested', 'test', now(), now())`,
      [randomUUID(), r.orderId, r.paymentId, r.amount, r.currency ?? 'INR', r.status ?? 'pending'],
    );
  const raise = (c: PoolClient, paymentId: string, by: number) =>
    c.query(`UPDATE payments SET refund_reserved = refund_reserved + $2 WHERE id = $1`, [
      paymentId,
      by,
    ]);

  it("sets a payment's counter that a past bug left apart from its refunds to their sum as it comes in, so its next refund is not refused for it", async () => {
    const runner = { query: (sql: string) => db.pool.query(sql) } as unknown as QueryRunner;
    const migration = new RefundsOfTheirPayment1763800058000();
    await migration.down(runner);
    const over = await paidOrder(); // counts 500 with no refund
    const under = await paidOrder(); // counts nothing for a succeeded 300 and a pending 200
    const right = await paidOrder(); // 400 for a succeeded 400 (a failed 100 aside)
    try {
      await db.pool.query(`UPDATE payments SET refund_reserved = 500 WHERE id = $1`, [
        over.paymentId,
      ]);
      await db.pool.query(`UPDATE payments SET refund_reserved = 400 WHERE id = $1`, [
        right.paymentId,
      ]);
      for (const [order, amount, status] of [
        [under, 300, 'succeeded'],
        [under, 200, 'pending'],
        [right, 400, 'succeeded'],
        [right, 100, 'failed'],
      ] as const)
        await inTransaction((c) => refundRow(c, { ...order, amount, status }));
    } finally {
      await migration.up(runner);
    }
    expect([
      await reservedOf(over.paymentId),
      await reservedOf(under.paymentId),
      await reservedOf(right.paymentId),
    ]).toEqual([0, 500, 400]);
  });

  it('refunds of one payment changing at once never look like a breach: the check reads the counter and the refunds in one snapshot', async () => {
    const a = await paidOrder();
    await db.pool.query(`UPDATE payments SET amount = 1000000000 WHERE id = $1`, [a.paymentId]);
    const refused: unknown[] = [];
    // (a connection of its own for each of 8 workers: the file's pool has 4)
    const many = new Pool({ connectionString: db.url, max: 8 });
    const oneRefund = async (c: PoolClient, outcome: 'succeeded' | 'failed') => {
      // reserve (as RefundRepository.reserve: the payment's lock, its counter, the refund) ...
      const id = randomUUID();
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM payments WHERE id = $1 FOR UPDATE`, [a.paymentId]);
      await raise(c, a.paymentId, 1);
      await c.query(
        `INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason, actor, created_at, updated_at)
         VALUES ($1, $2, $3, 1, 'INR', 'pending', 'requested', 'test', now(), now())`,
        [id, a.orderId, a.paymentId],
      );
      await c.query('COMMIT');
      // ... then settle: a success touches the refund alone (no lock on the payment), a failure
      // gives its share back — each committing while others reserve and settle
      try {
        await c.query('BEGIN');
        await c.query(`UPDATE refunds SET status = $2 WHERE id = $1`, [id, outcome]);
        if (outcome === 'failed') await raise(c, a.paymentId, -1);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        refused.push(err);
      }
    };
    try {
      await Promise.all(
        Array.from({ length: 8 }, async (_, worker) => {
          const c = await many.connect();
          try {
            for (let i = 0; i < 60; i++) await oneRefund(c, worker % 2 ? 'failed' : 'succeeded');
          } finally {
            c.release();
          }
        }),
      );
    } finally {
      await many.end();
    }
    expect(refused).toEqual([]);
    const { rows } = await db.pool.query(
      `SELECT count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded,
              count(*) FILTER (WHERE status = 'failed')::int AS failed
         FROM refunds WHERE payment_id = $1`,
      [a.paymentId],
    );
    expect(rows[0]).toEqual({ succeeded: 240, failed: 240 });
    expect(await reservedOf(a.paymentId)).toBe(240);
  });

  it("a refund names its own order's payment, in its currency: another order's payment or another currency is refused (23503)", async () => {
    const a = await paidOrder();
    const b = await paidOrder();
    await expect(
      inTransaction(async (c) => {
        await raise(c, b.paymentId, 1000);
        await refundRow(c, { orderId: a.orderId, paymentId: b.paymentId, amount: 1000 });
      }),
    ).rejects.toMatchObject({ code: '23503', constraint: 'refunds_of_their_payment' });
    await expect(
      inTransaction(async (c) => {
        await raise(c, a.paymentId, 1000);
        await refundRow(c, { ...a, amount: 1000, currency: 'EUR' });
      }),
    ).rejects.toMatchObject({ code: '23503', constraint: 'refunds_of_their_payment' });
    expect([await reservedOf(a.paymentId), await reservedOf(b.paymentId)]).toEqual([0, 0]);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM refunds WHERE order_id = ANY($1::uuid[])`,
      [[a.orderId, b.orderId]],
    );
    expect(rows[0].n).toBe(0);
  });

  it('a payment reserves exactly its pending and succeeded refunds, at every COMMIT (23514 otherwise, nothing kept)', async () => {
    const a = await paidOrder();
    const breach = { code: '23514', constraint: 'payments_refund_reserved_of_refunds' };
    // a refund recorded without its reservation
    await expect(inTransaction((c) => refundRow(c, { ...a, amount: 1000 }))).rejects.toMatchObject(
      breach,
    );
    // a reservation without its refund
    await expect(inTransaction((c) => raise(c, a.paymentId, 1000))).rejects.toMatchObject(breach);
    // both, in either order, in one transaction: as RefundRepository.reserve writes them
    await inTransaction(async (c) => {
      await refundRow(c, { ...a, amount: 1000 });
      await raise(c, a.paymentId, 1000);
    });
    const pending = (await db.pool.query(`SELECT id FROM refunds WHERE order_id = $1`, [a.orderId]))
      .rows[0].id as string;
    // succeeded keeps its share; failed without giving it back is refused, and with it, kept
    await db.pool.query(`UPDATE refunds SET status = 'succeeded' WHERE id = $1`, [pending]);
    await expect(
      db.pool.query(`UPDATE refunds SET status = 'failed' WHERE id = $1`, [pending]),
    ).rejects.toMatchObject(breach);
    await expect(
      db.pool.query(`UPDATE refunds SET amount = 2000 WHERE id = $1`, [pending]),
    ).rejects.toMatchObject(breach);
    await inTransaction(async (c) => {
      await c.query(`UPDATE refunds SET status = 'failed' WHERE id = $1`, [pending]);
      await raise(c, a.paymentId, -1000);
    });
    expect(await reservedOf(a.paymentId)).toBe(0);
    // a failed refund counts nothing; the test fixture writes refunds the same way
    await insertRefund(db.pool, { orderId: a.orderId, amount: 500, status: 'failed' });
    await insertRefund(db.pool, { orderId: a.orderId, amount: 2500, status: 'succeeded' });
    expect(await reservedOf(a.paymentId)).toBe(2500);
    // another payment's refunds are not this one's
    const b = await paidOrder();
    await insertRefund(db.pool, { orderId: b.orderId, amount: 700, status: 'pending' });
    expect([await reservedOf(a.paymentId), await reservedOf(b.paymentId)]).toEqual([2500, 700]);
  });
});
