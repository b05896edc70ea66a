import { INestApplicationContext, Logger } from '@nestjs/common';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmailService } from '../../src/notifications/email.service';
import {
  MailTransport,
  OutgoingEmail,
  UNANSWERED_HANDOVERS_LIMIT,
} from '../../src/notifications/mail-transport';
import { UNANSWERED_HANDOVER_RETRY_MS, emailJobId } from '../../src/notifications/email-job';
import { QueueName } from '../../src/queue/queues';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { REDIS } from '../../src/redis/redis.module';
import { registerCustomer } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { SmtpCapture } from '../support/smtp-capture';
import { drain } from '../support/drain';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * The order's cancellation email as an attempt that died after the send would leave it (still
 * 'sending', its claim old), then sent again by a new attempt, which takes it over: its outcome.
 */
async function retakeAbandoned(t: TestApp, worker: INestApplicationContext, orderId: string) {
  await t.db.pool.query(
    `UPDATE email_deliveries SET status = 'sending', sent_at = NULL, claimed_at = now() - interval '10 minutes'
      WHERE order_id = $1 AND kind = 'cancellation'`,
    [orderId],
  );
  return worker.get(EmailService, { strict: false }).send({ orderId, kind: 'cancellation' });
}

/**
 * Waits until the email job `jobId` has failed `attempts` attempts and waits for its retry: how
 * long it would wait for it (ms), and the retry run now.
 */
async function awaitRetry(
  worker: INestApplicationContext,
  jobId: string,
  attempts: number,
): Promise<{ waitMs: number; runNow: () => Promise<void> }> {
  const queue = worker.get<Queue>(getQueueToken(QueueName.Email));
  const client = await queue.client;
  const score = await waitFor(
    `attempt ${attempts} of ${jobId} to wait for its retry`,
    async () =>
      (await queue.getJob(jobId))?.attemptsMade === attempts
        ? await client.zscore(queue.keys.delayed, jobId)
        : null,
    { until: (s) => s !== null, timeoutMs: 20_000 },
  );
  // (a delayed job's score: its due time in ms × 0x1000 + a counter)
  const waitMs = Math.floor(Number(score) / 0x1000) - Date.now();
  return { waitMs, runNow: async () => (await queue.getJob(jobId))?.promote() };
}

/** A new customer's order of a new product, placed and cancelled: its cancellation email is owed. */
async function cancelledOrder(t: TestApp): Promise<string> {
  const customer = await registerCustomer(t.http);
  const buyer = { userId: customer.user.id, token: customer.accessToken };
  const product = await insertProduct(t.db.pool, { stock: 5 });
  const order = await placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }]);
  expect(order.status).toBe(201);
  const orderId = order.body.id as string;
  const cancelled = await t.http.post(
    `/v1/orders/${orderId}/cancel`,
    {},
    { token: buyer.token, idempotencyKey: newKey() },
  );
  expect(cancelled.status).toBe(200);
  return orderId;
}

describe('an email that went out stays recorded as sent across a database restart', () => {
  let pg: PrivatePostgres;
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    smtp = await SmtpCapture.start();
    t = await bootTestApp({ db: await pg.migratedDatabase(), env: { SMTP_URL: smtp.url } });
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await t?.db.drop();
    await smtp?.stop();
    await pg?.destroy();
  });

  it('the database dies between the send and the record: one message, recorded as sent after recovery', async () => {
    // the hook: right after the mail server accepted the cancellation email, PostgreSQL crashes
    // (pg_ctl stop -m immediate) and comes back two seconds later
    const transport = worker.get(MailTransport, { strict: false });
    const send = transport.send.bind(transport);
    let restarted: Promise<void> | undefined;
    transport.send = async (message: OutgoingEmail) => {
      await send(message);
      if (message.key.endsWith('.cancellation') && !restarted) {
        await pg.stop();
        // a deliberate two-second outage (wall-clock time is the point: the worker must ride it out)
        restarted = new Promise((r) => setTimeout(r, 2000)).then(() => pg.start());
      }
    };

    const orderId = await cancelledOrder(t);

    await smtp.awaitMessages(() => smtp.forOrder(orderId), 1);
    // the server has the message; the worker is about to see its answer and run the hook
    const crash = await waitFor('the hook to crash PostgreSQL', () => restarted && { restarted }, {
      timeoutMs: 10_000,
    });
    await crash.restarted;

    // the worker records the delivery once the database is back (no lease, no second send)
    const rows = await waitFor(
      'the delivery recorded as sent',
      async () =>
        (
          await t.db.pool.query<{ status: string; attempts: number }>(
            `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
            [orderId],
          )
        ).rows,
      { until: (r) => r[0]?.status === 'sent', timeoutMs: 30_000, retryErrors: true },
    );
    expect(rows).toEqual([{ status: 'sent', attempts: 1 }]);
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId).filter((m) => /cancel/i.test(m.subject))).toHaveLength(1);
    // recorded by the attempt that sent it: its accepted-mark served and is gone
    const mark = `${t.config.redis.keyPrefix}:email-accepted:${orderId}.cancellation`;
    expect(await worker.get<Redis>(REDIS, { strict: false }).exists(mark)).toBe(0);
  });

  it("the 'sent' record never landed (an outage past its two minutes of retries, or a worker killed after the 250 OK): the takeover records the accepted message, it does not mail it again", async () => {
    const orderId = await cancelledOrder(t);
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    // the mark served until 'sent' was recorded: gone since (nothing kept for a week per email)
    const mark = `${t.config.redis.keyPrefix}:email-accepted:${orderId}.cancellation`;
    expect(await worker.get<Redis>(REDIS, { strict: false }).exists(mark)).toBe(0);
    // as if 'sent' had not been recorded, the worker killed right after the server's 250 OK
    await worker.get<Redis>(REDIS, { strict: false }).set(mark, '1', 'PX', 60_000);

    // as if recording 'sent' had given up: the row still 'sending', its attempt gone
    const outcome = await retakeAbandoned(t, worker, orderId);
    expect(outcome).toBe('already-sent');
    const { rows } = await t.db.pool.query<{ status: string; attempts: number }>(
      `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
      [orderId],
    );
    expect(rows).toEqual([{ status: 'sent', attempts: 2 }]);
    expect(smtp.forOrder(orderId)).toHaveLength(1); // one message at the server, not two
    expect(await worker.get<Redis>(REDIS, { strict: false }).exists(mark)).toBe(0);
  });

  it('a message handed to the server whole whose answer is lost every time is sent at most twice, then taken as delivered (said at error); one lost before it was whole, or refused after it, is sent again until it goes', async () => {
    const errors = jest.spyOn(Logger.prototype, 'error');
    const delivery = async (orderId: string) =>
      (
        await t.db.pool.query<{ status: string; attempts: number }>(
          `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
          [orderId],
        )
      ).rows;
    try {
      // the server keeps each copy and the connection is lost before its answer, every time
      // (each retry after such an attempt waits 15 minutes: run now)
      smtp.dropBeforeAnswerTimes = 100;
      const unanswered = await cancelledOrder(t);
      const jobId = emailJobId({ orderId: unanswered, kind: 'cancellation' });
      for (let attempt = 1; attempt <= UNANSWERED_HANDOVERS_LIMIT; attempt++) {
        const retry = await awaitRetry(worker, jobId, attempt);
        expect(retry.waitMs).toBeGreaterThan(UNANSWERED_HANDOVER_RETRY_MS - 60_000);
        await retry.runNow();
      }
      await drain(worker, t.db.pool);
      expect(smtp.forOrder(unanswered)).toHaveLength(UNANSWERED_HANDOVERS_LIMIT);
      expect(await delivery(unanswered)).toEqual([
        { status: 'sent', attempts: UNANSWERED_HANDOVERS_LIMIT + 1 },
      ]);
      expect(errors.mock.calls.map(([m]) => String(m))).toContainEqual(
        expect.stringContaining(
          `email ${unanswered}.cancellation: handed to the mail server whole`,
        ),
      );
      smtp.dropBeforeAnswerTimes = 0;

      // lost at MAIL FROM, before the message: no copy at the server, so sent again until it goes
      smtp.dropAtSenderTimes = UNANSWERED_HANDOVERS_LIMIT + 1;
      const early = await cancelledOrder(t);
      await drain(worker, t.db.pool);
      expect(smtp.dropAtSenderTimes).toBe(0);
      expect(smtp.forOrder(early)).toHaveLength(1);
      expect(await delivery(early)).toEqual([
        { status: 'sent', attempts: UNANSWERED_HANDOVERS_LIMIT + 2 },
      ]);
      // refused after its DATA (a relay's rate limit, 454): answered, not taken — never counted as
      // handed over, so sent again until it goes, however often it was refused so
      smtp.refuseDataTimes = UNANSWERED_HANDOVERS_LIMIT;
      const throttled = await cancelledOrder(t);
      await drain(worker, t.db.pool);
      expect(smtp.refuseDataTimes).toBe(0);
      expect(smtp.forOrder(throttled)).toHaveLength(1);
      expect(await delivery(throttled)).toEqual([
        { status: 'sent', attempts: UNANSWERED_HANDOVERS_LIMIT + 1 },
      ]);
      // the marks served: gone
      const redis = worker.get<Redis>(REDIS, { strict: false });
      const prefix = t.config.redis.keyPrefix;
      for (const orderId of [unanswered, early, throttled]) {
        expect(
          await redis.exists(
            `${prefix}:email-accepted:${orderId}.cancellation`,
            `${prefix}:email-handed:${orderId}.cancellation`,
          ),
        ).toBe(0);
      }
    } finally {
      smtp.dropBeforeAnswerTimes = 0;
      smtp.dropAtSenderTimes = 0;
      smtp.refuseDataTimes = 0;
      errors.mockRestore();
    }
  }, 60_000);
});

describe('a relay that loses whole messages for a while (its process dies writing them to its queue)', () => {
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    smtp = await SmtpCapture.start();
    t = await bootTestApp({ env: { SMTP_URL: smtp.url } });
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await smtp?.stop();
  });

  it('the resend of a message handed over with no answer waits out the blip, and is delivered once it is over — not taken as delivered after a second loss 2 s later', async () => {
    smtp.loseBeforeAnswerTimes = 100; // every message, while the blip lasts
    let orderId: string;
    let retry: Awaited<ReturnType<typeof awaitRetry>>;
    try {
      orderId = await cancelledOrder(t);
      // the first attempt handed the message over whole and lost the connection: its retry
      // waits out the blip (at 2 s, then 4 s, the second loss took it for delivered)
      retry = await awaitRetry(worker, emailJobId({ orderId, kind: 'cancellation' }), 1);
      expect(retry.waitMs).toBeGreaterThan(UNANSWERED_HANDOVER_RETRY_MS - 60_000);
      expect(smtp.forOrder(orderId)).toEqual([]);
    } finally {
      smtp.loseBeforeAnswerTimes = 0; // the blip is over
    }
    await retry.runNow(); // (as it runs 15 minutes on)
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    const { rows } = await t.db.pool.query<{ status: string; attempts: number }>(
      `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
      [orderId],
    );
    expect(rows).toEqual([{ status: 'sent', attempts: 2 }]);
  });
});

describe('a worker that died between the send and the record (.eml transport)', () => {
  let dir: string;
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shop-mail-'));
    t = await bootTestApp({ env: { MAIL_OUTBOX_DIR: dir } });
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the attempt that takes the abandoned claim over records the delivered message instead of sending it again', async () => {
    const orderId = await cancelledOrder(t);
    const statusOf = async () =>
      (
        await t.db.pool.query<{ status: string; attempts: number }>(
          `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
          [orderId],
        )
      ).rows[0];
    expect(
      await waitFor('the delivery recorded as sent', statusOf, {
        until: (r) => r?.status === 'sent',
        timeoutMs: 20_000,
      }),
    ).toMatchObject({ status: 'sent' });
    const file = join(dir, `${orderId}.cancellation.eml`);
    const written = await stat(file);
    const content = await readFile(file, 'utf8');

    // as if the worker had died right after writing the message: still 'sending', claim expired
    const outcome = await retakeAbandoned(t, worker, orderId);

    expect(outcome).toBe('already-sent');
    expect(await statusOf()).toEqual({ status: 'sent', attempts: 2 });
    expect((await stat(file)).mtimeMs).toBe(written.mtimeMs); // not written a second time
    expect(await readFile(file, 'utf8')).toBe(content);
  });
});
