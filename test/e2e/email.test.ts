import Stripe from 'stripe';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { INestApplicationContext, Logger } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Job, Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmailDeliveryBusyError, EmailService } from '../../src/notifications/email.service';
import { EmailKind, emailJobId } from '../../src/notifications/email-job';
import { SMTP_IDLE_BEFORE_HANDOVER_MS, smtpIdle } from '../../src/notifications/mail-transport';
import { EmailReconciler } from '../../src/notifications/email-reconciler';
import { EmailDeliveryRepository } from '../../src/notifications/email-delivery.repository';
import { PaymentReader, REVERSED_AT_PROVIDER } from '../../src/payments/payment-reader';
import { RefundRepository } from '../../src/payments/refund.repository';
import { OutboxPublisher } from '../../src/outbox/outbox.publisher';
import { JobHandlers } from '../../src/queue/job-handlers';
import { JobName, QueueName } from '../../src/queue/queues';
import { Session, registerCustomer } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { insertRefund } from '../support/refunds';
import { Buyer, buyers, payOrder, placeOrder } from '../support/orders';
import { SmtpCapture } from '../support/smtp-capture';
import { drain } from '../support/drain';
import type Redis from 'ioredis';
import { REDIS } from '../../src/redis/redis.module';
import { CANCELLATION_EMAILS_PER_DAY } from '../../src/notifications/cancellation-limits';
import { APP_CONFIG, AppConfig } from '../../src/config/config';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';
import { repairOrders } from '../support/order-status';

const ref = (orderId: string) => orderId.slice(0, 8).toUpperCase();

const deliveriesOf = async (t: TestApp, orderId: string) =>
  (
    await t.db.pool.query(
      `SELECT kind, ref, recipient, status, attempts, message_id, last_error, claimed_at
         FROM email_deliveries WHERE order_id = $1 ORDER BY kind, ref`,
      [orderId],
    )
  ).rows;

/** An order of two lines: 2 × INR 249.00 (a name that needs HTML escaping) + 1 × INR 1,234.50. */
async function twoLineOrder(t: TestApp, buyer: Buyer): Promise<string> {
  const tea = await insertProduct(t.db.pool, { stock: 10, priceAmount: 24_900 });
  const hamper = await insertProduct(t.db.pool, { stock: 10, priceAmount: 123_450 });
  await t.db.pool.query(`UPDATE products SET name = $2 WHERE id = $1`, [tea, 'Tea <Assam> & "Co"']);
  await t.db.pool.query(`UPDATE products SET name = 'Festive hamper' WHERE id = $1`, [hamper]);
  const order = await placeOrder(t.http, buyer, [
    { productId: tea, quantity: 2 },
    { productId: hamper, quantity: 1 },
  ]);
  expect(order.status).toBe(201);
  return order.body.id;
}

const pay = (t: TestApp, buyer: Buyer, orderId: string, outcome: 'succeeded' | 'failed') =>
  payOrder(t.http, buyer, orderId, outcome);

/** The email job of `orderId` and `kind` once it has finished (its outcome recorded by BullMQ). */
const finishedEmailJob = (queue: Queue, orderId: string, kind: EmailKind, timeoutMs?: number) =>
  waitFor('the email job to finish', () => queue.getJob(emailJobId({ orderId, kind })), {
    until: (j) => j?.finishedOn != null,
    ...(timeoutMs ? { timeoutMs } : {}),
  });

async function cancel(t: TestApp, buyer: Buyer, orderId: string) {
  const res = await t.http.post(
    `/v1/orders/${orderId}/cancel`,
    {},
    { token: buyer.token, idempotencyKey: newKey() },
  );
  expect(res.status).toBe(200);
}

describe('order emails over SMTP (outbox → email queue → worker → SMTP server)', () => {
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Session;
  let buyer: Buyer;

  beforeAll(async () => {
    smtp = await SmtpCapture.start();
    t = await bootTestApp({ env: { SMTP_URL: smtp.url, MAIL_FROM: 'Shop <orders@shop.example>' } });
    worker = await bootTestWorker(t.config);
    alice = await registerCustomer(t.http, { name: 'Asha' });
    buyer = { userId: alice.user.id, token: alice.accessToken };
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await smtp?.stop();
  });

  it("the worker's pool has the API's silence limit, 60 s (only a statement marked long-running gets 10 min: long-running-statements.test.ts)", () => {
    expect(worker.get<AppConfig>(APP_CONFIG).database.queryTimeoutMs).toBe(60_000);
    expect(t.config.database.queryTimeoutMs).toBe(60_000);
  });

  it('paying sends a receipt and a confirmation, each with the lines and totals', async () => {
    const orderId = await twoLineOrder(t, buyer);
    await pay(t, buyer, orderId, 'succeeded');

    const mails = await smtp.awaitMessages(() => smtp.forOrder(orderId), 2);
    expect(mails.map((m) => m.subject).sort()).toEqual([
      `Order ${ref(orderId)} confirmed`,
      `Receipt for order ${ref(orderId)}`,
    ]);
    for (const m of mails) {
      expect(m.envelopeTo).toEqual([alice.email]);
      expect(m.headers.to).toBe(alice.email);
      expect(m.headers.from).toBe('Shop <orders@shop.example>');
      expect(m.text.split('\n')[0].trim()).toBe('Hello,'); // never the account's name (an address is not proven)
      expect(m.text).toContain('2 x Tea <Assam> & "Co" @ INR 249.00 = INR 498.00');
      expect(m.text).toContain('1 x Festive hamper @ INR 1,234.50 = INR 1,234.50');
      expect(m.text).toContain('Total: INR 1,732.50');
      expect(m.html).toContain('Tea &lt;Assam&gt; &amp; &quot;Co&quot;');
      expect(m.html).not.toContain('<Assam>');
      expect(m.html).toContain('INR 1,732.50');
    }
    const receipt = mails.find((m) => m.subject.startsWith('Receipt'))!;
    expect(receipt.messageId).toBe(`<${orderId}.payment_receipt@shop.example>`);
    expect(receipt.text).toContain(
      `We have received your payment of INR 1,732.50 for order ${ref(orderId)}.`,
    );

    const rows = await waitFor('both deliveries recorded as sent', () => deliveriesOf(t, orderId), {
      until: (r) => r.length === 2 && r.every((d) => d.status === 'sent'),
    });
    expect(rows).toMatchObject([
      { kind: 'order_confirmation', ref: '', recipient: alice.email, status: 'sent', attempts: 1 },
      { kind: 'payment_receipt', ref: '', recipient: alice.email, status: 'sent', attempts: 1 },
    ]);

    // the same provider event delivered 5 more times (3 at once): no second email
    const { rows: events } = await t.db.pool.query(
      `SELECT e.payload FROM webhook_events e JOIN payments p ON p.intent_id = e.intent_id WHERE p.order_id = $1`,
      [orderId],
    );
    const raw = JSON.stringify(events[0].payload);
    const deliver = () =>
      t.http.request('POST', '/v1/webhooks/stripe', undefined, {
        raw,
        headers: {
          'stripe-signature': new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
            payload: raw,
            secret: t.config.stripe.webhookSecret,
          }),
        },
      });
    const answers = [
      ...(await Promise.all([deliver(), deliver(), deliver()])),
      await deliver(),
      await deliver(),
    ];
    expect(answers.every((a) => a.status === 200)).toBe(true);
    await worker.get(PaymentFinalizer).processEvent(events[0].payload.id); // and a job rerun
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId)).toHaveLength(2);
  }, 30_000);

  it('a cancellation email says why, in words', async () => {
    const asked = await twoLineOrder(t, buyer);
    await cancel(t, buyer, asked);
    const failed = await twoLineOrder(t, buyer);
    await pay(t, buyer, failed, 'failed');
    // a product of it taken off sale before its payment began: cancelled at that payment's start
    const withdrawn = await twoLineOrder(t, buyer);
    await t.db.pool.query(
      `UPDATE products SET active = false
        WHERE id = (SELECT product_id FROM order_items WHERE order_id = $1 LIMIT 1)`,
      [withdrawn],
    );
    const refused = await t.http.post(
      `/v1/orders/${withdrawn}/payment`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect([refused.status, refused.body.code]).toEqual([409, 'ORDER_NOT_PAYABLE']);

    const [byCustomer] = await smtp.awaitMessages(() => smtp.forOrder(asked));
    expect(byCustomer.subject).toBe(`Order ${ref(asked)} cancelled`);
    expect(byCustomer.text).toContain(
      `Your order ${ref(asked)} has been cancelled, as you requested.`,
    );
    expect(byCustomer.text).toContain('Total: INR 1,732.50');
    const [byPayment] = await smtp.awaitMessages(() => smtp.forOrder(failed));
    expect(byPayment.text).toContain('because we could not accept its payment.');
    expect(byPayment.text).not.toContain('PAYMENT_FAILED');
    // not told its payment was refused (none was tried): told why, and that nothing was taken
    const [byShop] = await smtp.awaitMessages(() => smtp.forOrder(withdrawn));
    expect(byShop.text).toContain(
      `Your order ${ref(withdrawn)} has been cancelled because an item in it was withdrawn from sale before its payment began. Nothing has been charged for it.`,
    );
    expect(byShop.text).not.toContain('could not accept');
  }, 30_000);

  it('a slow mail server does not send the emails one at a time: a worker keeps several conversations open', async () => {
    const customers = await buyers(t.http, 3);
    const orders = await Promise.all(customers.map((b) => twoLineOrder(t, b)));
    const release = smtp.holdMessages();
    try {
      await Promise.all(orders.map((id, i) => cancel(t, customers[i], id)));
      // one at a time, the second would not start before the first is answered
      await waitFor('two messages received at once', async () => smtp.receiving, {
        until: (n) => n >= 2,
      });
    } finally {
      release();
    }
    for (const id of orders)
      expect(await smtp.awaitMessages(() => smtp.forOrder(id))).toHaveLength(1);
    await drain(worker, t.db.pool);
    expect(orders.map((id) => smtp.forOrder(id).length)).toEqual([1, 1, 1]);
  }, 30_000);

  it('a mail server that falls silent before the message (MAIL FROM unanswered) is given up after its silence limit (60 s; 6 s here), not the 10 minutes kept for the answer to the message: retried at once, delivered once', async () => {
    const stalled = await registerCustomer(t.http, { name: 'Stall' });
    const who: Buyer = { userId: stalled.user.id, token: stalled.accessToken };
    const orderId = await twoLineOrder(t, who);
    const warnings = jest.spyOn(Logger.prototype, 'warn');
    smtp.stallAtSenderTimes = 1;
    // (the worker runs in this process, and so does the mail server: a stall of this process as
    // long as the limit delays the server's replies too, and the retry is cut as well — 6 s, not
    // the 3 s a loaded machine once came near, as the 8 MB test in mail-transport.spec did)
    smtpIdle.beforeHandoverMs = 6_000;
    try {
      await cancel(t, who, orderId);
      await smtp.awaitMessages(() => smtp.forOrder(orderId), 1, smtpIdle.beforeHandoverMs + 30_000);
      expect(smtp.stallAtSenderTimes).toBe(0); // the first conversation was the stalled one
      const rows = await waitFor('the delivery recorded as sent', () => deliveriesOf(t, orderId), {
        until: (r) => r[0]?.status === 'sent',
      });
      expect(rows).toMatchObject([{ kind: 'cancellation', status: 'sent', attempts: 2 }]);
      // not delivered, so not an unanswered handover: one plain failed attempt
      const said = warnings.mock.calls.map(([m]) => String(m)).filter((m) => m.includes(orderId));
      expect(said).not.toEqual([]);
      for (const line of said) {
        expect(line).toMatch(
          /attempt 1 failed: no word from the mail server for 6 s before the message was handed over \(not delivered\)/,
        );
      }
      await drain(worker, t.db.pool);
      expect(smtp.forOrder(orderId)).toHaveLength(1);
    } finally {
      smtp.stallAtSenderTimes = 0;
      smtpIdle.beforeHandoverMs = SMTP_IDLE_BEFORE_HANDOVER_MS;
      warnings.mockRestore();
    }
  }, 60_000);

  it('the same email.send job processed 5 times (3 at once) sends exactly one message', async () => {
    const orderId = await twoLineOrder(t, buyer);
    const processor = worker.get(JobHandlers);
    const job = { name: JobName.SendEmail, data: { orderId, kind: 'order_confirmation' } } as Job;

    const concurrent = await Promise.allSettled([
      processor.process(job),
      processor.process(job),
      processor.process(job),
    ]);
    const sequential = [await processor.process(job), await processor.process(job)];

    const outcomes = concurrent.map((r) => (r.status === 'fulfilled' ? r.value : 'busy'));
    expect(outcomes.filter((o) => o === 'sent')).toHaveLength(1);
    for (const r of concurrent) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(EmailDeliveryBusyError);
    }
    expect(sequential).toEqual(['already-sent', 'already-sent']);
    await drain(worker, t.db.pool); // anything else this order set off has run
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    expect(await deliveriesOf(t, orderId)).toMatchObject([
      { kind: 'order_confirmation', status: 'sent', attempts: 1 },
    ]);
  });

  it('a confirmation that outlived its order (refunded since: its job waited out a mail outage) is recorded, not sent', async () => {
    const orderId = await twoLineOrder(t, buyer);
    // the order moved on while its confirmation's job was still owed (written as the refund would)
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'REFUNDED' WHERE id = $1`, [orderId]);
    expect(await worker.get(EmailService).send({ orderId, kind: 'order_confirmation' })).toBe(
      'skipped',
    );
    expect(await deliveriesOf(t, orderId)).toMatchObject([
      { kind: 'order_confirmation', status: 'suppressed', attempts: 1 },
    ]);
    // final: a rerun (the reconciler's, a retried job) sends nothing either
    expect(await worker.get(EmailService).send({ orderId, kind: 'order_confirmation' })).toBe(
      'skipped',
    );
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId).filter((m) => m.subject.endsWith('confirmed'))).toEqual([]);
  });

  it("refuses a delivery whose sender holds its lock, and takes a dead sender's claim over at once", async () => {
    const orderId = await twoLineOrder(t, buyer);
    // a worker claimed the receipt and died before recording the outcome: its lock is gone
    await t.db.pool.query(
      `INSERT INTO email_deliveries (id, order_id, kind, ref, recipient, status, attempts, message_id,
                                     claimed_at, created_at, updated_at)
       VALUES ($1, $2, 'payment_receipt', '', $3, 'sending', 1, 'm', now(), now(), now())`,
      [randomUUID(), orderId, alice.email],
    );
    const emails = worker.get(EmailService);
    // while a live sender holds the delivery's lock, it is busy
    const holder = await t.db.pool.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock(${0x454d}, hashtext($1::text))`, [
        `${orderId}.payment_receipt`,
      ]);
      await expect(emails.send({ orderId, kind: 'payment_receipt' })).rejects.toBeInstanceOf(
        EmailDeliveryBusyError,
      );
      expect(smtp.forOrder(orderId)).toHaveLength(0);
    } finally {
      await holder.query(`SELECT pg_advisory_unlock_all()`);
      holder.release();
    }

    // its holder gone, the fresh claim is taken over at once: no lease to wait out
    expect(await emails.send({ orderId, kind: 'payment_receipt' })).toBe('sent');
    expect(await emails.send({ orderId, kind: 'payment_receipt' })).toBe('already-sent');
    expect(smtp.forOrder(orderId)).toHaveLength(1);
    expect(await deliveriesOf(t, orderId)).toMatchObject([{ status: 'sent', attempts: 2 }]);
  });

  it('SMTP down, then up: the job is retried with backoff and the email delivered once', async () => {
    const orderId = await twoLineOrder(t, buyer);
    await smtp.stop();
    try {
      await cancel(t, buyer, orderId);
      // two attempts failed (2 s apart): the job keeps the stack of its last failure only
      const failed = await waitFor('two attempts to fail', () => deliveriesOf(t, orderId), {
        until: (r) => r[0]?.last_error != null && r[0].attempts >= 2 && r[0].claimed_at === null, // (not mid-attempt)
      });
      expect(failed).toMatchObject([{ kind: 'cancellation', status: 'sending', claimed_at: null }]);
      expect(failed[0].last_error).toMatch(/ECONNREFUSED/);
    } finally {
      await smtp.start();
    }

    const mails = await smtp.awaitMessages(() => smtp.forOrder(orderId), 1, 20_000);
    expect(mails.map((m) => m.subject)).toEqual([`Order ${ref(orderId)} cancelled`]);
    const rows = await waitFor('the delivery recorded as sent', () => deliveriesOf(t, orderId), {
      until: (r) => r[0]?.status === 'sent',
    });
    expect(rows[0].attempts).toBeGreaterThanOrEqual(2);

    // the row is recorded before BullMQ completes the job: wait for the job's own outcome
    const queue = worker.get<Queue>(getQueueToken(QueueName.Email));
    const job = await finishedEmailJob(queue, orderId, 'cancellation');
    expect(job?.returnvalue).toBe('sent');
    expect(job?.attemptsMade).toBeGreaterThanOrEqual(3);
    // bounded: 60 attempts a day (and the reconciler's rounds) of ~1 KB stacks each filled Redis
    // during a long mail outage
    expect(job?.stacktrace).toHaveLength(1);
    await drain(worker, t.db.pool);
    expect(smtp.forOrder(orderId)).toHaveLength(1);
  }, 40_000);

  it('a recipient the mail server refuses for good (550): one attempt, recorded as rejected, never retried or owed again; the address stays out of the record', async () => {
    const bounced = await registerCustomer(t.http, { name: 'Gone' });
    smtp.refusedRecipients.add(bounced.email.toLowerCase());
    const who: Buyer = { userId: bounced.user.id, token: bounced.accessToken };
    const orderId = await twoLineOrder(t, who);
    await cancel(t, who, orderId);
    const queue = worker.get<Queue>(getQueueToken(QueueName.Email));
    const job = await finishedEmailJob(queue, orderId, 'cancellation');
    expect(job?.attemptsMade).toBe(1); // not 60 tries over a day
    // completed with its outcome, not failed: the failed set is kept a week by age alone, and one
    // refused mailbox per account grew it at an anonymous registrant's rate (the row says why)
    expect([await job?.getState(), job?.returnvalue, job?.failedReason]).toEqual([
      'completed',
      'rejected',
      undefined,
    ]);
    const rows = await deliveriesOf(t, orderId);
    expect(rows).toMatchObject([
      { kind: 'cancellation', status: 'rejected', attempts: 1, claimed_at: null },
    ]);
    expect(rows[0].last_error).toMatch(/550|rejected/i);
    expect(rows[0].last_error).not.toContain(bounced.email);
    // not owed: the reconciliation leaves it, and a rerun of the job sends nothing
    await t.db.pool.query(
      `UPDATE outbox SET published_at = published_at - interval '5 minutes' WHERE payload ->> 'orderId' = $1`,
      [orderId],
    );
    expect(await worker.get(EmailReconciler).reconcile()).toBe(0);
    expect(await worker.get(EmailService).send({ orderId, kind: 'cancellation' })).toBe('skipped');
    expect(smtp.forOrder(orderId)).toHaveLength(0);
  }, 30_000);

  it('an address with a non-ASCII local part, to a server without SMTPUTF8 (553 5.6.7 at RCPT TO): one attempt, recorded as rejected, said once — not retried for days', async () => {
    smtp.offerSmtpUtf8 = false;
    const warnings = jest.spyOn(Logger.prototype, 'warn');
    try {
      const local = await registerCustomer(t.http, {
        email: `jösé-${randomUUID().slice(0, 8)}@test.local`,
      });
      const who: Buyer = { userId: local.user.id, token: local.accessToken };
      const orderId = await twoLineOrder(t, who);
      await cancel(t, who, orderId);
      const queue = worker.get<Queue>(getQueueToken(QueueName.Email));
      const job = await finishedEmailJob(queue, orderId, 'cancellation', 15_000);
      expect([job?.attemptsMade, await job?.getState(), job?.returnvalue]).toEqual([
        1,
        'completed',
        'rejected',
      ]);
      const rows = await deliveriesOf(t, orderId);
      expect(rows).toMatchObject([{ kind: 'cancellation', status: 'rejected', attempts: 1 }]);
      expect(rows[0].last_error).toMatch(/5\.6\.7/);
      expect(rows[0].last_error).not.toContain(local.email);
      const said = warnings.mock.calls.map(([m]) => String(m)).filter((m) => m.includes(orderId));
      expect(said).toEqual([expect.stringContaining('refused by the mail server for good')]);
      expect(smtp.forOrder(orderId)).toHaveLength(0);
    } finally {
      smtp.offerSmtpUtf8 = true;
      warnings.mockRestore();
    }
  }, 30_000);

  it('a sender the mail server refuses (530 at MAIL FROM: credentials missing) is retried, not taken for a bounce: sent once fixed', async () => {
    smtp.refuseSenderTimes = 1;
    const orderId = await twoLineOrder(t, buyer);
    await cancel(t, buyer, orderId);
    await smtp.awaitMessages(() => smtp.forOrder(orderId), 1);
    expect(smtp.refuseSenderTimes).toBe(0); // it was refused once first
    // recorded once the server has accepted it (a moment after the message arrived there)
    const rows = await waitFor('the delivery recorded as sent', () => deliveriesOf(t, orderId), {
      until: (r) => r[0]?.status !== 'sending',
    });
    expect(rows).toMatchObject([{ kind: 'cancellation', status: 'sent', attempts: 2 }]);
  }, 30_000);

  it(`an address gets at most ${CANCELLATION_EMAILS_PER_DAY} cancellation emails a day; the rest are recorded suppressed, never sent nor owed; a receipt still goes`, async () => {
    const victim = await registerCustomer(t.http); // someone else's address, registered by a script
    const who: Buyer = { userId: victim.user.id, token: victim.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 100, priceAmount: 1_000 });
    const orders: string[] = [];
    for (let i = 0; i < CANCELLATION_EMAILS_PER_DAY + 2; i++) {
      const order = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
      orders.push(order.body.id);
      await cancel(t, who, order.body.id);
      await drain(worker, t.db.pool); // one after the other, as a script would
    }
    const statuses = (
      await t.db.pool.query(
        `SELECT status FROM email_deliveries WHERE order_id = ANY($1) AND kind = 'cancellation'`,
        [orders],
      )
    ).rows.map((r) => r.status as string);
    expect(statuses.filter((s) => s === 'sent')).toHaveLength(CANCELLATION_EMAILS_PER_DAY);
    expect(statuses.filter((s) => s === 'suppressed')).toHaveLength(2);
    expect(orders.flatMap((id) => smtp.forOrder(id))).toHaveLength(CANCELLATION_EMAILS_PER_DAY);
    // not owed: the reconciliation leaves them
    await t.db.pool.query(
      `UPDATE outbox SET published_at = published_at - interval '5 minutes' WHERE payload ->> 'orderId' = ANY($1)`,
      [orders],
    );
    expect(await worker.get(EmailReconciler).reconcile()).toBe(0);
    // money moving is never held back
    const paid = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
    await pay(t, who, paid.body.id, 'succeeded');
    await smtp.awaitMessages(() => smtp.forOrder(paid.body.id), 2);
  }, 60_000);

  it(`other accounts of an inbox (sub-addresses registered since) share ${CANCELLATION_EMAILS_PER_DAY} a day among them, and cannot use up its owner's own (its oldest account that paid): a stranger cannot silence a customer's cancellation emails`, async () => {
    const owner = await registerCustomer(t.http);
    const who: Buyer = { userId: owner.user.id, token: owner.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 100, priceAmount: 1_000 });
    // a customer: paid once (its receipt sent)
    const paid = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
    await pay(t, who, paid.body.id, 'succeeded');
    await smtp.awaitMessages(() => smtp.forOrder(paid.body.id), 2);
    const [local, domain] = owner.email.split('@');
    // a stranger's accounts at the same inbox, registered after its owner's
    const aliases: Buyer[] = [];
    for (const tag of ['a', 'b']) {
      const alias = await registerCustomer(t.http, { email: `${local}+${tag}@${domain}` });
      aliases.push({ userId: alias.user.id, token: alias.accessToken });
    }
    const byAliases: string[] = [];
    for (let i = 0; i < CANCELLATION_EMAILS_PER_DAY + 1; i++) {
      const who = aliases[i % 2];
      const order = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
      byAliases.push(order.body.id);
      await cancel(t, who, order.body.id);
    }
    await drain(worker, t.db.pool);
    const statuses = async (orders: string[]) =>
      (
        await t.db.pool.query(
          `SELECT status FROM email_deliveries WHERE order_id = ANY($1) AND kind = 'cancellation'`,
          [orders],
        )
      ).rows.map((r) => r.status as string);
    const sent = await statuses(byAliases);
    expect(sent.filter((s) => s === 'sent')).toHaveLength(CANCELLATION_EMAILS_PER_DAY);
    expect(sent.filter((s) => s === 'suppressed')).toHaveLength(1);
    // the owner's own cancellation still goes
    const own = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
    await cancel(t, who, own.body.id);
    await drain(worker, t.db.pool);
    expect(await deliveriesOf(t, own.body.id)).toMatchObject([
      { kind: 'cancellation', status: 'sent' },
    ]);
    expect(smtp.forOrder(own.body.id)).toHaveLength(1);
  }, 60_000);

  it(`workers sending one inbox's cancellation emails at once never pass the ${CANCELLATION_EMAILS_PER_DAY} a day between them`, async () => {
    const victim = await registerCustomer(t.http);
    const who: Buyer = { userId: victim.user.id, token: victim.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 100, priceAmount: 1_000 });
    const orders: string[] = [];
    for (let i = 0; i < CANCELLATION_EMAILS_PER_DAY - 2; i++) {
      const order = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
      orders.push(order.body.id);
      await cancel(t, who, order.body.id);
    }
    await drain(worker, t.db.pool);
    // room for two more; four are sent at once (as by four workers), besides the worker's own jobs
    const racing: string[] = [];
    for (let i = 0; i < 4; i++) {
      const order = await placeOrder(t.http, who, [{ productId: product, quantity: 1 }]);
      racing.push(order.body.id);
      await cancel(t, who, order.body.id);
    }
    const emails = worker.get(EmailService, { strict: false });
    await Promise.allSettled(
      racing.map((orderId) => emails.send({ orderId, kind: 'cancellation' })),
    );
    await drain(worker, t.db.pool);
    const statuses = (
      await t.db.pool.query(
        `SELECT status FROM email_deliveries WHERE order_id = ANY($1) AND kind = 'cancellation'`,
        [[...orders, ...racing]],
      )
    ).rows.map((r) => r.status as string);
    expect(statuses.filter((s) => s === 'sent')).toHaveLength(CANCELLATION_EMAILS_PER_DAY);
    expect(statuses.filter((s) => s === 'suppressed')).toHaveLength(2);
    expect([...orders, ...racing].flatMap((id) => smtp.forOrder(id))).toHaveLength(
      CANCELLATION_EMAILS_PER_DAY,
    );
  }, 60_000);

  it('one refund email per refund, with the amount from the refund row', async () => {
    const orderId = await twoLineOrder(t, buyer);
    await pay(t, buyer, orderId, 'succeeded');
    await smtp.awaitMessages(() => smtp.forOrder(orderId), 2);

    // the refund feature is built separately: write its rows and events as it will
    const refunds = [
      { id: randomUUID(), amount: 10_000 },
      { id: randomUUID(), amount: 24_900 },
    ];
    for (const r of refunds) {
      await insertRefund(t.db.pool, { id: r.id, orderId, amount: r.amount, status: 'succeeded' });
      await t.db.pool.query(
        `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
         VALUES ($1, 'order.refunded', $2, $3, 'pending', 0, now(), now())`,
        [randomUUID(), orderId, JSON.stringify({ orderId, refundId: r.id })],
      );
    }

    const refundMails = () => smtp.forOrder(orderId).filter((m) => m.subject.startsWith('Refund'));
    const mails = await smtp.awaitMessages(refundMails, 2);
    expect(mails.map((m) => m.subject).sort()).toEqual([
      `Refund of INR 100.00 for order ${ref(orderId)}`,
      `Refund of INR 249.00 for order ${ref(orderId)}`,
    ]);
    expect(mails.map((m) => m.messageId).sort()).toEqual(
      refunds.map((r) => `<${orderId}.refund.${r.id}@shop.example>`).sort(),
    );

    // the same event relayed again, and the job rerun: nothing more
    const publisher = worker.get(OutboxPublisher);
    const again = { orderId, refundId: refunds[0].id };
    await publisher.publish({
      id: randomUUID(),
      topic: 'order.refunded',
      aggregateId: orderId,
      payload: again,
      attempts: 1,
      ageMs: 0,
    });
    expect(await worker.get(EmailService).send({ ...again, kind: 'refund' })).toBe('already-sent');
    await drain(worker, t.db.pool);
    expect(refundMails()).toHaveLength(2);
    const rows = await deliveriesOf(t, orderId);
    expect(
      rows
        .filter((d) => d.kind === 'refund')
        .map((d) => d.ref)
        .sort(),
    ).toEqual(refunds.map((r) => r.id).sort());
  }, 30_000);

  describe('a refund the provider reversed (the bank returned it)', () => {
    /** An outbox event as the refund code writes it (the relay publishes it). */
    const event = (
      topic: 'order.refunded' | 'order.refund-reversed',
      orderId: string,
      refundId: string,
    ) =>
      t.db.pool.query(
        `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, now(), now())`,
        [randomUUID(), topic, orderId, JSON.stringify({ orderId, refundId })],
      );
    /** The provider reverses it, recorded as RefundsService records it (payment's reservation too). */
    const reverse = (refundId: string) =>
      worker.get(RefundRepository).reverse(refundId, REVERSED_AT_PROVIDER, new Date());
    const refundMails = (orderId: string) =>
      smtp.forOrder(orderId).filter((m) => m.subject.startsWith('Refund'));
    const paidOrder = async () => {
      const orderId = await twoLineOrder(t, buyer);
      await pay(t, buyer, orderId, 'succeeded');
      await smtp.awaitMessages(() => smtp.forOrder(orderId), 2);
      return orderId;
    };
    /** A paid order with a refund of `amount` that succeeded (its email not sent yet). */
    const refunded = async (amount = 10_000) => {
      const orderId = await paidOrder();
      const refundId = await insertRefund(t.db.pool, { orderId, amount, status: 'succeeded' });
      return { orderId, refundId };
    };
    /** The refund's email left 'sending', claimed `claimedAgo` ago (an interval) or given back. */
    const leftSending = (
      orderId: string,
      refundId: string,
      claimedAgo: string | null,
      lastError: string | null = null,
    ) =>
      t.db.pool.query(
        `INSERT INTO email_deliveries (id, order_id, kind, ref, recipient, inbox, status, attempts, message_id, claimed_at, last_error, created_at, updated_at)
         VALUES ($1, $2, 'refund', $3, $4, $4, 'sending', 1, $5, now() - $6::interval, $7, now(), now())`,
        [
          randomUUID(),
          orderId,
          refundId,
          alice.email,
          `<${orderId}.refund.${refundId}@shop.example>`,
          claimedAgo,
          lastError,
        ],
      );

    it('after its "refunded" email went out: the customer is told once that it did not reach them, however often the event is relayed', async () => {
      const { orderId, refundId } = await refunded(24_900);
      await event('order.refunded', orderId, refundId);
      await smtp.awaitMessages(() => refundMails(orderId), 1);
      await reverse(refundId);
      await event('order.refund-reversed', orderId, refundId);
      await event('order.refund-reversed', orderId, refundId); // relayed twice
      const mails = await smtp.awaitMessages(() => refundMails(orderId), 2);
      await drain(worker, t.db.pool);
      expect(refundMails(orderId).map((m) => [m.subject, m.messageId])).toEqual([
        [
          `Refund of INR 249.00 for order ${ref(orderId)}`,
          `<${orderId}.refund.${refundId}@shop.example>`,
        ],
        [
          `Refund of INR 249.00 for order ${ref(orderId)} did not reach you`,
          `<${orderId}.refund_reversed.${refundId}@shop.example>`,
        ],
      ]);
      expect(mails[1].text).toContain('the payment provider returned it to us');
      expect(
        (await deliveriesOf(t, orderId))
          .filter((d) => d.ref === refundId)
          .map((d) => [d.kind, d.status, d.attempts]),
      ).toEqual([
        ['refund', 'sent', 1],
        ['refund_reversed', 'sent', 1],
      ]);
    }, 30_000);

    it('before its "refunded" email went out: neither is sent, both recorded suppressed (final, never owed)', async () => {
      const { orderId, refundId } = await refunded();
      await reverse(refundId);
      await event('order.refunded', orderId, refundId);
      await event('order.refund-reversed', orderId, refundId);
      await drain(worker, t.db.pool);
      expect(refundMails(orderId)).toEqual([]);
      const rows = (await deliveriesOf(t, orderId)).filter((d) => d.ref === refundId);
      expect(rows.map((d) => [d.kind, d.status])).toEqual([
        ['refund', 'suppressed'],
        ['refund_reversed', 'suppressed'],
      ]);
      // neither is owed: the reconciliation adds no job back for them
      await t.db.pool.query(
        `UPDATE outbox SET published_at = now() - interval '1 hour' WHERE payload ->> 'refundId' = $1`,
        [refundId],
      );
      const owed = await worker
        .get(EmailDeliveryRepository)
        .findUnsent({ windowMs: 6 * 86_400_000, graceMs: 0, limit: 1000 });
      expect(owed.filter((o) => o.ref === refundId)).toEqual([]);
    }, 30_000);

    it('after a "refunded" email left sending (its own job skips a failed refund): settled under its lock — sent if the mail server took it, else suppressed; the reversal told unless it surely never went out (a failed attempt released it)', async () => {
      const cases = [
        // a worker that died mid-send 12 minutes ago, after the server's 250 OK (its mark kept)
        { claimedAgo: '12 minutes', lastError: null, accepted: true, refund: 'sent', told: true },
        // ... before it (no mark): it may have gone out all the same
        {
          claimedAgo: '12 minutes',
          lastError: null,
          accepted: false,
          refund: 'suppressed',
          told: true,
        },
        // a failed attempt that gave its claim back: the server refused it for now
        {
          claimedAgo: null,
          lastError: '451 4.3.0 try again later',
          accepted: false,
          refund: 'suppressed',
          told: false,
        },
        // ... after an earlier attempt handed it over whole and had no answer (counted)
        {
          claimedAgo: null,
          lastError: '451 4.3.0 try again later',
          accepted: false,
          handed: true,
          refund: 'suppressed',
          told: true,
        },
      ];
      for (const c of cases) {
        const { orderId, refundId } = await refunded();
        await leftSending(orderId, refundId, c.claimedAgo, c.lastError);
        const key = `${orderId}.refund.${refundId}`;
        const mark = `${t.config.redis.keyPrefix}:email-accepted:${key}`;
        const redis = worker.get<Redis>(REDIS, { strict: false });
        if (c.accepted) await redis.set(mark, '1', 'PX', 60_000);
        if ('handed' in c)
          await redis.set(`${t.config.redis.keyPrefix}:email-handed:${key}`, '1', 'PX', 60_000);
        await reverse(refundId);
        await event('order.refund-reversed', orderId, refundId);
        await drain(worker, t.db.pool);
        const rows = (await deliveriesOf(t, orderId)).filter((d) => d.ref === refundId);
        expect([c, rows.map((d) => [d.kind, d.status])]).toEqual([
          c,
          [
            ['refund', c.refund],
            ['refund_reversed', c.told ? 'sent' : 'suppressed'],
          ],
        ]);
        expect(refundMails(orderId).map((m) => m.subject)).toEqual(
          c.told ? [`Refund of INR 100.00 for order ${ref(orderId)} did not reach you`] : [],
        );
        expect(await worker.get<Redis>(REDIS, { strict: false }).exists(mark)).toBe(0);
      }
    }, 60_000);

    it('a "refunded" email claimed moments ago is waited for (its attempt may be sending it still, its lock session ended under it), not settled', async () => {
      const { orderId, refundId } = await refunded();
      await leftSending(orderId, refundId, '0 seconds');
      await reverse(refundId);
      await expect(
        worker.get(EmailService).send({ orderId, kind: 'refund_reversed', refundId }),
      ).rejects.toBeInstanceOf(EmailDeliveryBusyError);
      const rows = (await deliveriesOf(t, orderId)).filter((d) => d.ref === refundId);
      expect(rows.map((d) => [d.kind, d.status])).toEqual([['refund', 'sending']]);
    }, 30_000);

    it('a refund email job that read the refund before the reversal cannot mail "refunded" after the reversal was found untold', async () => {
      const { orderId, refundId } = await refunded();
      const succeeded = await worker.get(PaymentReader).findRefund(refundId);
      await reverse(refundId);
      const emails = worker.get(EmailService);
      expect(await emails.send({ orderId, kind: 'refund_reversed', refundId })).toBe('skipped');
      // the refund's job read the refund while it still said succeeded, and comes to send now
      const stale = jest
        .spyOn(worker.get(PaymentReader), 'findRefund')
        .mockResolvedValueOnce(succeeded);
      try {
        expect(await emails.send({ orderId, kind: 'refund', refundId })).toBe('skipped');
      } finally {
        stale.mockRestore();
      }
      await drain(worker, t.db.pool);
      expect(refundMails(orderId)).toEqual([]);
    }, 30_000);

    it('owed while its job is gone (Redis lost it): the reconciliation lists a reversal whose refund was reversed, not one whose refund stands', async () => {
      const { orderId, refundId } = await refunded();
      const standing = await insertRefund(t.db.pool, {
        orderId,
        amount: 5_000,
        status: 'succeeded',
      });
      await reverse(refundId);
      // published an hour ago, and no delivery recorded (their jobs lost)
      for (const r of [refundId, standing])
        await t.db.pool.query(
          `INSERT INTO outbox (id, topic, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
           VALUES ($1, 'order.refund-reversed', $2, $3, 'published', 1, now(), now() - interval '1 hour', now() - interval '1 hour')`,
          [randomUUID(), orderId, JSON.stringify({ orderId, refundId: r })],
        );
      const owed = await worker
        .get(EmailDeliveryRepository)
        .findUnsent({ windowMs: 6 * 86_400_000, graceMs: 0, limit: 1000 });
      expect(owed.filter((o) => o.orderId === orderId).map((o) => [o.kind, o.ref])).toEqual([
        ['refund_reversed', refundId],
      ]);
    }, 30_000);
  });
});

describe('order emails without SMTP_URL (development: .eml files)', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let root: string;
  let dir: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'shop-mail-'));
    dir = join(root, 'not', 'there', 'yet');
    t = await bootTestApp({
      env: { SMTP_URL: '', MAIL_OUTBOX_DIR: dir, MAIL_FROM: 'Shop <orders@shop.example>' },
    });
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('writes the message as <order>.<kind>.eml into the outbox folder', async () => {
    const session = await registerCustomer(t.http, { name: 'Ravi' });
    const buyer = { userId: session.user.id, token: session.accessToken };
    const orderId = await twoLineOrder(t, buyer);
    await cancel(t, buyer, orderId);

    await drain(worker, t.db.pool); // the file is written before the row says sent: wait for both
    const file = `${orderId}.cancellation.eml`;
    expect(await readdir(dir)).toEqual([file]);
    const eml = (await readFile(join(dir, file), 'utf8')).replace(/\r?\n[ \t]+/g, ' '); // unfold headers
    expect(eml).toContain(`To: ${session.email}`);
    expect(eml).toContain(`Subject: Order ${ref(orderId)} cancelled`);
    expect(eml).toContain(`Message-ID: <${orderId}.cancellation@shop.example>`);
    expect(eml).toContain('Content-Type: text/html');
    expect(await deliveriesOf(t, orderId)).toMatchObject([
      { kind: 'cancellation', status: 'sent', attempts: 1 },
    ]);
  }, 30_000);
});
