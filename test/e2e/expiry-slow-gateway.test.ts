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

  it('an unpaid order expires while the expiries of five paying ones wait for the provider (at most 2 asking at once)', async () => {
    const customers = await buyers(t.http, 6);
    const p = await insertProduct(t.db.pool, { stock: 12 });
    const paying: string[] = [];
    for (const buyer of customers.slice(0, 5)) {
      const order = await placeOrder(t.http, buyer, [{ productId: p, quantity: 2 }]);
      const pay = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: buyer.token, idempotencyKey: newKey() },
      );
      expect(pay.status).toBe(201);
      paying.push(order.body.id as string);
    }
    const unpaid = (await placeOrder(t.http, customers[5], [{ productId: p, quantity: 2 }])).body
      .id as string;
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 second' WHERE id = ANY($1)`,
      [[...paying, unpaid]],
    );

    // the provider takes its time over the paying orders' intents
    const finalizer = worker.get(PaymentFinalizer);
    const settleOverdue = finalizer.settleOverdue.bind(finalizer);
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    let waiting = 0;
    let mostAtOnce = 0;
    const spy = jest.spyOn(finalizer, 'settleOverdue').mockImplementation(async (orderId) => {
      waiting++;
      mostAtOnce = Math.max(mostAtOnce, waiting);
      await answered;
      waiting--;
      return settleOverdue(orderId);
    });
    const statusOf = async (id: string) =>
      (await t.db.pool.query(`SELECT status FROM orders WHERE id = $1`, [id])).rows[0]
        .status as string;
    try {
      const queue = worker.get<Queue>(getQueueToken(QueueName.Orders));
      for (const orderId of paying) await queue.add(JobName.ExpireReservation, { orderId });
      await waitFor('two expiries to be asking the provider', () => waiting, {
        until: (n) => n === 2,
      });
      await queue.add(JobName.ExpireReservation, { orderId: unpaid });
      const status = await waitFor('the unpaid order to expire', () => statusOf(unpaid), {
        until: (s) => s === 'CANCELLED',
        timeoutMs: 8_000,
      });
      expect(status).toBe('CANCELLED');
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 12, reserved: 10 });
      expect(mostAtOnce).toBe(2);
    } finally {
      answer();
    }
    try {
      // and the paying ones, once the provider answers (their intents cancelled there): those
      // put back while the askers were busy come round again on their own
      for (const id of paying) {
        await waitFor(`paying order ${id} to expire`, () => statusOf(id), {
          until: (s) => s === 'CANCELLED',
          timeoutMs: 30_000,
        });
      }
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 12, reserved: 0 });
    } finally {
      spy.mockRestore();
    }
  }, 60_000);
});
