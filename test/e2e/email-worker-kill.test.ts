import { INestApplicationContext } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import { SMTPServer } from 'smtp-server';
import { emailJobId } from '../../src/notifications/email-job';
import { QueueName } from '../../src/queue/queues';
import { registerCustomer } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, placeOrder } from '../support/orders';
import { runScript } from '../support/processes';
import { drain } from '../support/drain';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * A mail server that records every message's Message-ID as soon as it has the whole message,
 * and can hold back its "250 OK" for the next one: the sender sits between "the server has it"
 * and "I know it was accepted" for as long as the test likes.
 */
class HoldingMailServer {
  readonly received: { messageId: string; subject: string }[] = [];
  private hold?: { reached: () => void };

  private constructor(
    private readonly server: SMTPServer,
    readonly url: string,
  ) {}

  static async start(): Promise<HoldingMailServer> {
    const ref: { current?: HoldingMailServer } = {};
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const head = Buffer.concat(chunks)
            .toString('utf8')
            .split(/\r?\n\r?\n/)[0]
            .replace(/\r?\n[ \t]+/g, ' ');
          const self = ref.current!;
          self.received.push({
            messageId: /^message-id:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? '',
            subject: /^subject:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? '',
          });
          const hold = self.hold;
          self.hold = undefined;
          if (hold)
            hold.reached(); // never answered: the client dies waiting
          else callback();
        });
      },
    });
    server.on('error', () => undefined); // a killed client resets its connection
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const { port } = server.server.address() as AddressInfo;
    ref.current = new HoldingMailServer(server, `smtp://127.0.0.1:${port}`);
    return ref.current;
  }

  /** Resolves when the next message has been received (and is left unanswered). */
  holdNext(): Promise<void> {
    return new Promise((reached) => (this.hold = { reached }));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Issue 11 drill finding: a worker killed between claiming an email delivery and recording it
 * 'sent' left the row 'sending' for the 5-minute claim lease (plus the job's exponential
 * backoff), so the email went out ~8.5 minutes late. The claim must die with the worker: the
 * stalled job, rerun by BullMQ within ~15 s, takes the delivery over at once — and the resend
 * (the server had accepted the first copy) carries the same Message-ID.
 */
describe('an email whose worker is killed mid-send', () => {
  let mail: HoldingMailServer;
  let t: TestApp;
  let buyer: Buyer;
  let env: Record<string, string>;
  let second: INestApplicationContext | undefined;
  const procs: ReturnType<typeof runScript>[] = [];

  const cancelledOrder = async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    const orderId = order.body.id as string;
    const res = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(res.status).toBe(200);
    return orderId;
  };
  const deliveryOf = async (orderId: string) =>
    (
      await t.db.pool.query<{ status: string; attempts: number }>(
        `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
        [orderId],
      )
    ).rows[0];
  /** waitFor, naming the worker processes' last output when it times out. */
  const until = <T>(what: string, probe: () => Promise<T | undefined>, ms: number) =>
    waitFor(what, probe, {
      timeoutMs: ms,
      context: () => procs.map((p) => p.output().slice(-3000)).join('\n---\n'),
    });

  beforeAll(async () => {
    mail = await HoldingMailServer.start();
    t = await bootTestApp({ env: { SMTP_URL: mail.url, MAIL_FROM: 'Shop <orders@shop.example>' } });
    env = {
      DATABASE_URL: t.db.url,
      REDIS_KEY_PREFIX: t.config.redis.keyPrefix,
      DATABASE_POOL_SIZE: '5',
      SMTP_URL: mail.url,
      MAIL_FROM: 'Shop <orders@shop.example>',
    };
    const customer = await registerCustomer(t.http);
    buyer = { userId: customer.user.id, token: customer.accessToken };
  });
  afterAll(async () => {
    for (const p of procs)
      if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await second?.close();
    await t?.close();
    await mail?.stop();
  });

  it('the rerun job takes the delivery over within seconds; one Message-ID reaches the server', async () => {
    let reached = false;
    void mail.holdNext().then(() => (reached = true));
    const first = runScript('src/worker.ts', env, 'warn');
    procs.push(first);
    const orderId = await cancelledOrder();
    const messageId = `<${orderId}.cancellation@shop.example>`;
    await until('the first worker to send', async () => (reached ? true : undefined), 90_000);
    expect(mail.received).toEqual([
      { messageId, subject: `Order ${orderId.slice(0, 8).toUpperCase()} cancelled` },
    ]);
    expect(await deliveryOf(orderId)).toEqual({ status: 'sending', attempts: 1 });

    // the server has the message; its sender dies before it hears "250 OK"
    first.proc.kill('SIGKILL');
    await first.exited;
    const killedAt = Date.now();
    second = await bootTestWorker(t.config);

    // BullMQ reruns the stalled job (job lock 10 s, stalled check every 5 s) and the delivery is
    // taken over at once: no lease to wait out
    const row = await until(
      "the delivery to be recorded 'sent'",
      async () => {
        const r = await deliveryOf(orderId);
        return r?.status === 'sent' ? r : undefined;
      },
      45_000,
    );
    const tookMs = Date.now() - killedAt;
    expect(row).toEqual({ status: 'sent', attempts: 2 });
    expect(tookMs).toBeLessThan(30_000);
    await drain(second, t.db.pool);
    // over SMTP the second attempt cannot know the first got through: the same message again,
    // with the same Message-ID (RFC 5322: one message), never a second distinct one
    expect(mail.received.map((m) => m.messageId)).toEqual([messageId, messageId]);
  }, 180_000);

  it('a delivery a live attempt is sending waits seconds (no attempt spent), and goes once it is let go', async () => {
    second ??= await bootTestWorker(t.config);
    const queue = second.get<Queue>(getQueueToken(QueueName.Email));
    // a live sender of this delivery: it holds the delivery's lock on its own session
    const holder = new Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      const productId = await insertProduct(t.db.pool, { stock: 5 });
      const order = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
      const orderId = order.body.id as string;
      const key = `${orderId}.cancellation`;
      await holder.query(`SELECT pg_advisory_lock(${0x454d}, hashtext($1::text))`, [key]);
      await t.db.pool.query(
        `INSERT INTO email_deliveries (id, order_id, kind, ref, recipient, status, attempts, message_id,
                                       claimed_at, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, 'cancellation', '', 'x@example.com', 'sending', 1, $2, now(), now(), now())`,
        [orderId, `<${key}@shop.example>`],
      );
      const sentBefore = mail.received.length;
      const res = await t.http.post(
        `/v1/orders/${orderId}/cancel`,
        {},
        { token: buyer.token, idempotencyKey: newKey() },
      );
      expect(res.status).toBe(200);

      // the job finds it busy: put back for a couple of seconds, no attempt spent
      const waiting = await until(
        'the job to be put back as busy',
        async () => {
          const job = await queue.getJob(emailJobId({ orderId, kind: 'cancellation' }));
          const busy = (job?.data as { busyRetries?: number } | undefined)?.busyRetries ?? 0;
          return job && busy >= 2 ? job : undefined;
        },
        30_000,
      );
      expect(waiting.attemptsMade).toBe(0);
      expect(mail.received.length).toBe(sentBefore);

      await holder.query(`SELECT pg_advisory_unlock(${0x454d}, hashtext($1::text))`, [key]);
      const releasedAt = Date.now();
      await until(
        "the delivery to be recorded 'sent'",
        async () => ((await deliveryOf(orderId))?.status === 'sent' ? true : undefined),
        20_000,
      );
      expect(Date.now() - releasedAt).toBeLessThan(10_000);
      expect(await deliveryOf(orderId)).toEqual({ status: 'sent', attempts: 2 });
      await drain(second, t.db.pool);
      expect(mail.received.filter((m) => m.messageId === `<${key}@shop.example>`)).toHaveLength(1);
    } finally {
      await holder.end();
    }
  }, 90_000);
});
