import { INestApplicationContext, Logger } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { MetricsService } from '../../src/metrics/metrics.service';
import { getQueueToken } from '@nestjs/bullmq';
import { Job, type Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { EmailReconciler } from '../../src/notifications/email-reconciler';
import {
  EmailDeliveryRepository,
  type OwedEmail,
} from '../../src/notifications/email-delivery.repository';
import { EMAIL_MAX_STALLS, emailJobId } from '../../src/notifications/email-job';
import { JobQueues } from '../../src/queue/job-queues';
import { JobName, QueueName } from '../../src/queue/queues';
import { registerCustomer } from '../support/auth';
import { drain } from '../support/drain';
import { insertProduct, newKey } from '../support/fixtures';
import { insertRefund } from '../support/refunds';
import { Buyer, payOrder, placeOrder } from '../support/orders';
import { PrivateRedis } from '../support/private-redis';
import { SmtpCapture } from '../support/smtp-capture';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

// Once an outbox event is published, its email lives only in Redis. A Redis that loses recent
// writes (restarted without persistence, a failover to a replica behind) used to lose the
// email for good: the outbox row said "published" and nothing else remembered it.
describe('emails whose jobs Redis lost', () => {
  let redis: PrivateRedis;
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;
  let buyer: Buyer;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    smtp = await SmtpCapture.start();
    t = await bootTestApp({ env: { REDIS_URL: redis.url, SMTP_URL: smtp.url } });
    worker = await bootTestWorker(t.config);
    const alice = await registerCustomer(t.http);
    buyer = { userId: alice.user.id, token: alice.accessToken };
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await smtp?.stop();
    await redis?.down();
  });

  const emailQueue = () => worker.get<Queue>(getQueueToken(QueueName.Email));
  const reconcile = () => worker.get(EmailReconciler).reconcile();
  const find = (jobId: string) => worker.get(JobQueues).find(JobName.SendEmail, jobId);
  const deliveries = async (orderId: string) =>
    (
      await t.db.pool.query(
        `SELECT kind, ref, status FROM email_deliveries WHERE order_id = $1 ORDER BY kind, ref`,
        [orderId],
      )
    ).rows;
  /**
   * As if the events had been published a few minutes ago (past the pass's grace period) — once
   * each is recorded as published: the relay queues an event's job, then records it, so a job
   * already found may belong to an event still pending for a moment (aged then, it was not).
   */
  const age = async (orderId: string) => {
    await waitFor(
      "the order's events recorded as published",
      async () =>
        (
          await t.db.pool.query(
            `SELECT count(*)::int AS n FROM outbox WHERE status <> 'published' AND payload ->> 'orderId' = $1`,
            [orderId],
          )
        ).rows[0].n as number,
      { until: (n) => n === 0 },
    );
    await t.db.pool.query(
      `UPDATE outbox SET published_at = published_at - interval '5 minutes'
        WHERE status = 'published' AND payload ->> 'orderId' = $1`,
      [orderId],
    );
  };

  async function order(): Promise<string> {
    const productId = await insertProduct(t.db.pool, { stock: 10 });
    const res = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
    expect(res.status).toBe(201);
    return res.body.id;
  }

  it('emails lost with Redis (a cancellation, a receipt, a confirmation, a refund) are sent once by the next pass; nothing for a failed refund or a sent email', async () => {
    // an order whose emails went out normally
    const sentOrder = await order();
    const cancelSent = await t.http.post(
      `/v1/orders/${sentOrder}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(cancelSent.status).toBe(200);
    await drain(worker, t.db.pool);
    expect(await deliveries(sentOrder)).toEqual([
      { kind: 'cancellation', ref: '', status: 'sent' },
    ]);

    // the worker stops taking email jobs; one order is cancelled, another paid and refunded
    // twice (one refund failed: no email owed for it)
    await emailQueue().pause();
    const lostOrder = await order();
    const cancel = await t.http.post(
      `/v1/orders/${lostOrder}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(cancel.status).toBe(200);
    const paidOrder = await order();
    await payOrder(t.http, buyer, paidOrder);
    const receiptJob = emailJobId({ orderId: paidOrder, kind: 'payment_receipt' });
    const confirmationJob = emailJobId({ orderId: paidOrder, kind: 'order_confirmation' });
    await waitFor(
      'the payment finalized',
      async () => (await find(receiptJob)) && (await find(confirmationJob)),
    );
    const refunded = randomUUID();
    const failed = randomUUID();
    for (const [id, status] of [
      [refunded, 'succeeded'],
      [failed, 'failed'],
    ] as const) {
      await insertRefund(t.db.pool, { id, orderId: paidOrder, amount: 100, status });
      await t.db.pool.query(
        `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
         VALUES ($1, 'order.refunded', $2, $3, 'pending', 0, now(), now())`,
        [randomUUID(), paidOrder, JSON.stringify({ orderId: paidOrder, refundId: id })],
      );
    }
    const cancellationJob = emailJobId({ orderId: lostOrder, kind: 'cancellation' });
    const refundJob = emailJobId({ orderId: paidOrder, kind: 'refund', refundId: refunded });
    const failedRefundJob = emailJobId({ orderId: paidOrder, kind: 'refund', refundId: failed });
    await waitFor('the events published into the paused queue', async () => {
      const { rows } = await t.db.pool.query(
        `SELECT count(*)::int AS n FROM outbox WHERE payload ->> 'orderId' IN ($1, $2) AND status <> 'published'`,
        [lostOrder, paidOrder],
      );
      return (
        rows[0].n === 0 &&
        (await find(cancellationJob)) &&
        (await find(refundJob)) &&
        (await find(failedRefundJob))
      );
    });

    // Redis restarts without its data: the jobs are gone, the outbox rows say "published"
    await redis.down();
    await redis.up();
    await waitFor('the worker back on the new Redis', () => worker.get(JobQueues).connected(), {
      retryErrors: true,
    });
    expect(await find(cancellationJob)).toBeUndefined();
    await drain(worker, t.db.pool);
    expect(await deliveries(lostOrder)).toEqual([]);
    expect(await deliveries(paidOrder)).toEqual([]);
    // the pass leaves events inside its grace period to their own jobs
    expect(await reconcile()).toBe(0);

    await age(lostOrder);
    await age(paidOrder);
    await age(sentOrder);
    expect(await reconcile()).toBe(4);
    // twice in a row, or racing the added job: nothing more
    expect(await reconcile()).toBe(0);
    await drain(worker, t.db.pool);

    expect(await deliveries(lostOrder)).toEqual([
      { kind: 'cancellation', ref: '', status: 'sent' },
    ]);
    expect(await deliveries(paidOrder)).toEqual([
      { kind: 'order_confirmation', ref: '', status: 'sent' },
      { kind: 'payment_receipt', ref: '', status: 'sent' },
      { kind: 'refund', ref: refunded, status: 'sent' },
    ]);
    expect(await find(failedRefundJob)).toBeUndefined();
    const messageIds = (orderId: string) =>
      smtp
        .forOrder(orderId)
        .map((m) => m.messageId.replace(/@.*$/, '>'))
        .sort();
    expect(messageIds(lostOrder)).toEqual([`<${lostOrder}.cancellation>`]);
    expect(messageIds(paidOrder)).toEqual(
      [
        `<${paidOrder}.order_confirmation>`,
        `<${paidOrder}.payment_receipt>`,
        `<${paidOrder}.refund.${refunded}>`,
      ].sort(),
    );
    expect(smtp.forOrder(sentOrder)).toHaveLength(1);

    // sent, and the completed jobs later removed from Redis: still nothing to add
    await emailQueue().clean(0, 1000, 'completed');
    expect(await reconcile()).toBe(0);
  });

  /** An order cancelled while the email queue is paused: its cancellation email's job, queued. */
  async function pausedCancellation() {
    const orderId = await order();
    await emailQueue().pause();
    const cancel = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(cancel.status).toBe(200);
    const jobId = emailJobId({ orderId, kind: 'cancellation' });
    const queued = await waitFor('the cancellation job queued', () => find(jobId));
    return { orderId, jobId, queued };
  }

  it('a job still in the queue (a mail server down: retrying) is left alone', async () => {
    const { orderId } = await pausedCancellation();
    await age(orderId);
    expect(await reconcile()).toBe(0);
    await emailQueue().resume();
    await drain(worker, t.db.pool);
    expect(await deliveries(orderId)).toEqual([{ kind: 'cancellation', ref: '', status: 'sent' }]);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
  });

  /**
   * A cancellation whose email job has one attempt (a day's worth, as far as BullMQ is concerned)
   * and runs while the mail server is down: it fails for good. The mail server stays down.
   */
  async function cancellationFailingForGood(): Promise<{ orderId: string; jobId: string }> {
    const { orderId, jobId, queued } = await pausedCancellation();
    await queued.remove();
    await emailQueue().add(JobName.SendEmail, queued.data, { jobId, attempts: 1 });
    await smtp.stop();
    await emailQueue().resume();
    return { orderId, jobId };
  }
  const failedForGood = (jobId: string) =>
    waitFor('the job to fail for good', async () => (await find(jobId))?.getState(), {
      until: (s) => s === 'failed',
    });

  it.each([
    ['', false],
    // what BullMQ leaves of a record an evicting Redis dropped, when it moves the job on: no data,
    // no name — each retry of it failed at once ("no job undefined"): it is added again instead
    [' (its record since without its name and data)', true],
  ])(
    'a job that failed after all its retries (a mail outage longer than a day)%s is sent by the next pass: late, not lost',
    async (_what, recordLost) => {
      const { orderId, jobId } = await cancellationFailingForGood();
      await failedForGood(jobId);
      if (recordLost) {
        const client = await emailQueue().client;
        await client.runCommand('hdel', [`${emailQueue().qualifiedName}:${jobId}`, 'data', 'name']);
        expect((await find(jobId))?.data).toEqual({});
      }
      await smtp.start();
      await age(orderId);
      expect(await reconcile()).toBe(1);
      await drain(worker, t.db.pool);
      expect(await deliveries(orderId)).toEqual([
        { kind: 'cancellation', ref: '', status: 'sent' },
      ]);
      expect(smtp.forOrder(orderId)).toHaveLength(1);
      expect(await reconcile()).toBe(0); // sent: owed no more
    },
    30_000,
  );

  it('two passes at once (on two workers, one outlasting its interval) retry a failed job once, and neither pass fails', async () => {
    const { orderId, jobId } = await cancellationFailingForGood();
    await failedForGood(jobId);
    await smtp.start();
    await age(orderId);
    // both passes read the job failed before either retries it (the overlap, made certain)
    const getState = Job.prototype.getState;
    let reads = 0;
    let bothRead!: () => void;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    const spy = jest.spyOn(Job.prototype, 'getState').mockImplementation(async function (
      this: Job,
    ) {
      const state = await getState.call(this);
      if (this.id === jobId && ++reads === 2) bothRead();
      if (this.id === jobId && reads <= 2) await barrier;
      return state;
    });
    let passes: number[];
    try {
      passes = await Promise.all([reconcile(), reconcile()]);
    } finally {
      spy.mockRestore();
    }
    // the second pass found it retried under it: nothing of its own added, the rest of its pass done
    expect(passes.sort()).toEqual([0, 1]);
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
  }, 30_000);

  const givenUpCount = async (kind: string) => {
    const page = await worker.get(MetricsService).render();
    const line = page
      .split('\n')
      .find((l) => l.startsWith(`emails_given_up_total{kind="${kind}"} `));
    return Number(line?.split(' ')[1] ?? NaN);
  };

  /** Rounds 1–3 each retry the job failed for good; the fourth leaves it failed, for the operator. */
  const threeRoundsThenLeft = async (jobId: string) => {
    for (let round = 1; round <= 4; round++) {
      await failedForGood(jobId);
      expect([round, await reconcile()]).toEqual([round, round <= 3 ? 1 : 0]);
    }
    expect((await find(jobId))?.data.reconcilerRetries).toBe(3);
  };

  it('a failed job is given three more rounds at most, then left failed for the operator, said once at error', async () => {
    const { orderId, jobId } = await cancellationFailingForGood();
    const errors = jest.spyOn(Logger.prototype, 'error');
    try {
      const counted = () => givenUpCount('cancellation');
      const before = await counted();
      await age(orderId);
      await threeRoundsThenLeft(jobId);
      expect(await reconcile()).toBe(0);
      const givenUp = errors.mock.calls.filter(([m]) => /given up/.test(String(m)));
      expect(givenUp.map(([m]) => String(m))).toEqual([expect.stringContaining(orderId)]);
      // and counted once, for an alert: emails_given_up_total{kind}
      expect((await counted()) - before).toBe(1);
    } finally {
      await smtp.start();
    }
  }, 60_000);

  it("a job in none of the queue's lists (its record kept, its place lost: an eviction, an operator's DEL) is added again and sent once — it was taken for one still on its way", async () => {
    const { orderId, jobId } = await pausedCancellation();
    const client = await emailQueue().client;
    const name = emailQueue().qualifiedName;
    await client.runCommand('lrem', [`${name}:wait`, '0', jobId]);
    await client.runCommand('lrem', [`${name}:paused`, '0', jobId]);
    await client.runCommand('zrem', [`${name}:prioritized`, jobId]);
    expect(await (await find(jobId))?.getState()).toBe('unknown');
    await age(orderId);
    expect(await reconcile()).toBe(1);
    await emailQueue().resume();
    await drain(worker, t.db.pool);
    expect(await deliveries(orderId)).toEqual([{ kind: 'cancellation', ref: '', status: 'sent' }]);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    expect(await reconcile()).toBe(0);
  }, 30_000);

  it('a pass killed between recording its round and retrying the job (two Redis calls) does not spend the round: three rounds are still given', async () => {
    const { orderId, jobId } = await cancellationFailingForGood();
    try {
      await age(orderId);
      await failedForGood(jobId);
      // the pass's retry dies once the round is recorded, before the job is retried (the pass
      // goes on past it, the email left owed for the next one, as one killed there leaves it)
      const spy = jest.spyOn(Job.prototype, 'retry').mockRejectedValueOnce(new Error('killed'));
      try {
        await reconcile();
        expect(spy).toHaveBeenCalledTimes(1);
      } finally {
        spy.mockRestore();
      }
      expect((await find(jobId))?.data.reconcilerRetries).toBe(1);
      await threeRoundsThenLeft(jobId);
    } finally {
      await smtp.start();
    }
  }, 60_000);

  it('an email whose event the relay parked as dead (never published, never queued) is sent once by the next pass; the row stays dead', async () => {
    const orderId = await order();
    // as the relay leaves an event that failed to publish ten times (not an outage): dead
    const id = randomUUID();
    await t.db.pool.query(
      `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, last_error, next_attempt_at, created_at)
       VALUES ($1, 'order.cancelled', $2, $3, 'dead', 10, 'NOPERM', now(), now() - interval '5 minutes')`,
      [id, orderId, JSON.stringify({ orderId, reason: 'CUSTOMER_REQUESTED' })],
    );
    expect(await reconcile()).toBe(1);
    await drain(worker, t.db.pool);
    expect(await deliveries(orderId)).toEqual([{ kind: 'cancellation', ref: '', status: 'sent' }]);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    expect(await reconcile()).toBe(0); // sent: owed no more
    expect(
      (await t.db.pool.query(`SELECT status FROM outbox WHERE id = $1`, [id])).rows[0].status,
    ).toBe('dead');
  });

  it('a malformed published event (no uuid where one belongs) is skipped, not a failed pass', async () => {
    const orderId = await order();
    for (const payload of [{ orderId: 'not-a-uuid' }, { orderId, refundId: 'nor-this' }, {}]) {
      await t.db.pool.query(
        `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
         VALUES ($1, 'order.refunded', NULL, $2, 'published', 1, now(), now(), now() - interval '10 minutes')`,
        [randomUUID(), JSON.stringify(payload)],
      );
    }
    await expect(reconcile()).resolves.toBe(0);
  });

  it('pages owed emails by their exact instant: events one relay batch stamped alike (one microsecond) are each read once, never again on the next page', async () => {
    const ids = [randomUUID(), randomUUID(), randomUUID()].sort();
    const orders = [await order(), await order(), await order()];
    try {
      for (const [i, id] of ids.entries()) {
        await t.db.pool.query(
          `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
           VALUES ($1, 'order.confirmed', NULL, $2, 'published', 1, now(), now(),
                   date_trunc('second', now()) - interval '3 days' + interval '123457 microseconds')`,
          [id, JSON.stringify({ orderId: orders[i] })],
        );
      }
      const repo = worker.get(EmailDeliveryRepository);
      const notBefore = new Date(Date.now() - 3 * 86_400_000 - 5_000);
      const page = (after?: OwedEmail) =>
        repo.findUnsent({ windowMs: 6 * 86_400_000, graceMs: 60_000, limit: 2, notBefore, after });
      const first = await page();
      expect(first.map((e) => e.outboxId)).toEqual(ids.slice(0, 2));
      const second = await page(first[1]);
      expect(second[0].outboxId).toBe(ids[2]); // not the first two again
      expect(second.map((e) => e.outboxId)).not.toContain(ids[0]);
    } finally {
      await t.db.pool.query(`DELETE FROM outbox WHERE id = ANY($1::uuid[])`, [ids]);
    }
  });

  it('an email job outlives ten deaths of its workers before BullMQ fails it (the other queues: two)', () => {
    const workers = worker
      .get(DiscoveryService)
      .getProviders()
      .map(
        (p) =>
          p.instance as
            { queue?: string; worker?: { opts: { maxStalledCount?: number } } } | undefined,
      )
      .filter((i) => i?.queue !== undefined && i.worker !== undefined);
    const stalls = Object.fromEntries(
      workers.map((i) => [i!.queue, i!.worker!.opts.maxStalledCount]),
    );
    expect(stalls).toMatchObject({
      [QueueName.Email]: EMAIL_MAX_STALLS,
      [QueueName.Payments]: 2,
      [QueueName.Orders]: 2,
    });
    expect(EMAIL_MAX_STALLS).toBe(10);
  });
});
