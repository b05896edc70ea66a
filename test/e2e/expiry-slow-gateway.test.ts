import { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { JobName, QueueName } from '../../src/queue/queues';
import { insertProduct, newKey, stockOf } from '../support/fixtures';
import { buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * A payment provider that answers slowly (seconds, under its timeout) holds each expiry job of an
 * order whose payment has started while it asks about the intent. The orders queue's worker runs
 * several jobs at once: the expiry of an order nobody started paying for — stock other buyers are
 * waiting for — never queues behind those questions.
 */
describe('reservation expiry with a slow payment provider', () => {
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    t = await bootTestApp();
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it('an unpaid order expires while the expiry of a paying one waits for the provider', async () => {
    const [alice, bob] = await buyers(t.http, 2);
    const p = await insertProduct(t.db.pool, { stock: 4 });
    const paying = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const unpaid = await placeOrder(t.http, bob, [{ productId: p, quantity: 2 }]);
    const pay = await t.http.post(
      `/v1/orders/${paying.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = ANY($1)`,
      [[paying.body.id, unpaid.body.id]],
    );

    // the provider takes its time over the paying order's intent
    const finalizer = worker.get(PaymentFinalizer);
    const settleOverdue = finalizer.settleOverdue.bind(finalizer);
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    let asked!: () => void;
    const askedOnce = new Promise<void>((resolve) => (asked = resolve));
    const spy = jest.spyOn(finalizer, 'settleOverdue').mockImplementation(async (orderId) => {
      asked();
      await answered;
      return settleOverdue(orderId);
    });
    try {
      const queue = worker.get<Queue>(getQueueToken(QueueName.Orders));
      await queue.add(JobName.ExpireReservation, { orderId: paying.body.id });
      await askedOnce;
      await queue.add(JobName.ExpireReservation, { orderId: unpaid.body.id });
      const status = await waitFor(
        'the unpaid order to expire',
        async () =>
          (await t.db.pool.query(`SELECT status FROM orders WHERE id = $1`, [unpaid.body.id]))
            .rows[0].status as string,
        { until: (s) => s === 'CANCELLED', timeoutMs: 8_000 },
      );
      expect(status).toBe('CANCELLED');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 2 });
    } finally {
      answer();
      spy.mockRestore();
    }
    // and the paying one, once the provider answers (its intent cancelled there)
    await waitFor(
      'the paying order to expire',
      async () =>
        (await t.db.pool.query(`SELECT status FROM orders WHERE id = $1`, [paying.body.id])).rows[0]
          .status as string,
      { until: (s) => s === 'CANCELLED' },
    );
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 4, reserved: 0 });
  });
});
