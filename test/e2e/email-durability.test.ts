import { INestApplicationContext } from '@nestjs/common';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmailService } from '../../src/notifications/email.service';
import { MailTransport, OutgoingEmail } from '../../src/notifications/mail-transport';
import { registerCustomer } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { SmtpCapture } from '../support/smtp-capture';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined as T);
    if ((value !== undefined && ok(value)) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
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
        restarted = new Promise((r) => setTimeout(r, 2000)).then(() => pg.start());
      }
    };

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

    await smtp.waitFor(() => smtp.forOrder(orderId), 1);
    // the server has the message; the worker is about to see its answer and run the hook
    await eventually(async () => restarted, (r) => r !== undefined, 10_000);
    expect(restarted).toBeDefined();
    await restarted;

    // the worker records the delivery once the database is back (no lease, no second send)
    const rows = await eventually(
      async () =>
        (
          await t.db.pool.query<{ status: string; attempts: number }>(
            `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
            [orderId],
          )
        ).rows,
      (r) => r[0]?.status === 'sent',
      30_000,
    );
    expect(rows).toEqual([{ status: 'sent', attempts: 1 }]);
    expect(smtp.forOrder(orderId).filter((m) => /cancel/i.test(m.subject))).toHaveLength(1);
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
    const customer = await registerCustomer(t.http);
    const buyer = { userId: customer.user.id, token: customer.accessToken };
    const product = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, buyer, [{ productId: product, quantity: 1 }]);
    const orderId = order.body.id as string;
    const cancelled = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(cancelled.status).toBe(200);
    const statusOf = async () =>
      (
        await t.db.pool.query<{ status: string; attempts: number }>(
          `SELECT status, attempts FROM email_deliveries WHERE order_id = $1 AND kind = 'cancellation'`,
          [orderId],
        )
      ).rows[0];
    expect(await eventually(statusOf, (r) => r?.status === 'sent', 20_000)).toMatchObject({ status: 'sent' });
    const file = join(dir, `${orderId}.cancellation.eml`);
    const written = await stat(file);
    const content = await readFile(file, 'utf8');

    // as if the worker had died right after writing the message: still 'sending', claim expired
    await t.db.pool.query(
      `UPDATE email_deliveries SET status = 'sending', sent_at = NULL, claimed_at = now() - interval '10 minutes'
        WHERE order_id = $1 AND kind = 'cancellation'`,
      [orderId],
    );
    const outcome = await worker.get(EmailService, { strict: false }).send({ orderId, kind: 'cancellation' });

    expect(outcome).toBe('already-sent');
    expect(await statusOf()).toEqual({ status: 'sent', attempts: 2 });
    expect((await stat(file)).mtimeMs).toBe(written.mtimeMs); // not written a second time
    expect(await readFile(file, 'utf8')).toBe(content);
  });
});
