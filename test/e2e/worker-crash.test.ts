import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { QueueName } from '../../src/queue/queues';
import { drain } from '../support/drain';
import { FakeStripe, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { runScript } from '../support/processes';
import { freePort } from '../support/ports';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootPublisherContext } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * A worker process killed (SIGKILL) in the middle of a payment job — after Stripe acted on its
 * refund request, before the answer arrived — and a second worker that picks the stalled job up:
 * the job reruns and the customer is refunded exactly once.
 */
describe('worker killed mid-job (real processes)', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let alice: Buyer;
  let env: Record<string, string>;
  const workers: ReturnType<typeof runScript>[] = [];

  /** waitFor, naming the workers' last output when it times out. */
  const until = <T>(what: string, probe: () => Promise<T | undefined>) =>
    waitFor(what, probe, {
      timeoutMs: 45_000,
      context: () => workers.map((w) => w.output().slice(-3000)).join('\n---\n'),
    });
  const startWorker = (metricsPort = 0) => {
    const w = runScript(
      'src/worker.ts',
      { ...env, WORKER_METRICS_PORT: String(metricsPort) },
      'warn',
    );
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    stripe = await startFakeStripe();
    const stripeEnv = stripe.env();
    t = await bootTestApp({ env: stripeEnv });
    env = {
      ...stripeEnv,
      DATABASE_URL: t.db.url,
      REDIS_KEY_PREFIX: t.config.redis.keyPrefix,
      DATABASE_POOL_SIZE: '5',
      MAIL_OUTBOX_DIR: t.config.mail.outboxDir,
    };
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await t?.close();
    await stripe?.close();
  });

  it('reruns the job on another worker; the automatic refund happens once', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount: 6000 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const orderId: string = order.body.id;
    const pay = await t.http.post(
      `/v1/orders/${orderId}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    const intent: string = pay.body.paymentIntentId;
    // the customer pays, but the cancel reaches us before Stripe's event: the worker must refund
    const event = stripe.succeed(intent);
    expect(
      (
        await t.http.post(
          `/v1/orders/${orderId}/cancel`,
          {},
          { token: alice.token, idempotencyKey: newKey() },
        )
      ).status,
    ).toBe(200);

    const refundTookEffect = stripe.hangAfterEffect('/v1/refunds');
    const first = startWorker();
    const { body, signature } = stripe.signed(event);
    const delivered = await t.http.request('POST', '/v1/webhooks/stripe', undefined, {
      raw: body,
      headers: { 'stripe-signature': signature },
    });
    expect(delivered.status).toBe(200);
    let reached = false;
    void refundTookEffect.then(() => (reached = true));
    await until('the first worker to reach the refund call', async () =>
      reached ? true : undefined,
    );

    first.proc.kill('SIGKILL'); // mid-job: Stripe refunded, our side never heard back
    await first.exited;
    // one refund, pending — or already settled by the cancel's own job (order.cancelled →
    // cancel-intent finds the intent paid and refunds it too: same refund, same provider key, so
    // Stripe replays the hung call's answer to it), which the worker runs beside the hung one
    const midway = await t.db.pool.query(`SELECT status FROM refunds WHERE order_id = $1`, [
      orderId,
    ]);
    expect(midway.rows).toHaveLength(1);
    expect(['pending', 'succeeded']).toContain(midway.rows[0].status);

    const metricsPort = await freePort(); // the kernel's pick: a random one collided with ephemeral ports
    startWorker(metricsPort);
    await until('the refund to settle', async () => {
      const r = await t.db.pool.query(`SELECT status FROM refunds WHERE order_id = $1`, [orderId]);
      return r.rows[0]?.status === 'succeeded' ? true : undefined;
    });
    // "once" only holds once the killed job has been run again (the stall check hands it to the
    // second worker 5-15 s after the kill, which may be after the refund settled): the payments
    // queue drained, nothing active, and the killed event's job finished
    const ctx = await bootPublisherContext(t.config);
    try {
      await drain(ctx, t.db.pool, { queues: [QueueName.Payments], timeoutMs: 45_000 });
      const rerun = await ctx.get<Queue>(getQueueToken(QueueName.Payments)).getJob(event.id);
      expect(rerun?.finishedOn).toBeDefined();
    } finally {
      await ctx.close();
    }

    const atStripe = await stripe.client().refunds.list({ payment_intent: intent });
    expect(atStripe.data.map((r) => r.amount)).toEqual([12_000]);
    const refunds = await t.db.pool.query(
      `SELECT amount::int, reason FROM refunds WHERE order_id = $1`,
      [orderId],
    );
    expect(refunds.rows).toEqual([{ amount: 12_000, reason: 'paid_after_cancel' }]);
    const announced = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM outbox WHERE topic = 'order.refunded' AND aggregate_id = $1`,
      [orderId],
    );
    expect(announced.rows[0].n).toBe(1);
    const o = await t.http.get(`/v1/orders/${orderId}`, { token: alice.token });
    expect(o.body).toMatchObject({
      status: 'CANCELLED',
      payment: { status: 'succeeded', refunded: { amount: 12_000 } },
    });
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });

    // the second worker's own metrics endpoint counts the job it finished
    const metrics = await until('worker metrics', async () => {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      return /jobs_total\{queue="payments",outcome="completed"\} [1-9]/.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toContain('order_transitions_total');
    expect((await fetch(`http://127.0.0.1:${metricsPort}/health/live`)).status).toBe(200);
  }, 120_000);
});
