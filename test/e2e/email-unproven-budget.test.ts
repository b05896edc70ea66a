import { INestApplicationContext } from '@nestjs/common';
import { EmailReconciler } from '../../src/notifications/email-reconciler';
import { EmailService } from '../../src/notifications/email.service';
import { MetricsService } from '../../src/metrics/metrics.service';
import { registerCustomer } from '../support/auth';
import { drain } from '../support/drain';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, payOrder, placeOrder } from '../support/orders';
import { SmtpCapture } from '../support/smtp-capture';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

/** The shop's budget in these tests: cancellation emails a day to inboxes nobody has proven. */
const BUDGET = 3;

async function stranger(t: TestApp): Promise<Buyer> {
  // an account opened with an address nobody proves (a script's, or someone else's)
  const s = await registerCustomer(t.http);
  return { userId: s.user.id, token: s.accessToken };
}

/** A one-line order placed and cancelled by `who` (its cancellation email is then owed). */
async function cancelledOrder(t: TestApp, who: Buyer, productId: string): Promise<string> {
  const order = await placeOrder(t.http, who, [{ productId, quantity: 1 }]);
  expect(order.status).toBe(201);
  const res = await t.http.post(
    `/v1/orders/${order.body.id}/cancel`,
    {},
    { token: who.token, idempotencyKey: newKey() },
  );
  expect(res.status).toBe(200);
  return order.body.id as string;
}

const cancellationStatuses = async (t: TestApp, orders: string[]) =>
  (
    await t.db.pool.query<{ status: string }>(
      `SELECT status FROM email_deliveries WHERE order_id = ANY($1) AND kind = 'cancellation'`,
      [orders],
    )
  ).rows.map((r) => r.status);

const count = (statuses: string[], status: string) => statuses.filter((s) => s === status).length;

describe(`the shop's daily budget of cancellation emails to unproven inboxes (CANCELLATION_EMAILS_UNPROVEN_PER_DAY=${BUDGET})`, () => {
  let smtp: SmtpCapture;
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    smtp = await SmtpCapture.start();
    t = await bootTestApp({
      env: {
        SMTP_URL: smtp.url,
        MAIL_FROM: 'Shop <orders@shop.example>',
        CANCELLATION_EMAILS_UNPROVEN_PER_DAY: String(BUDGET),
      },
    });
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await smtp?.stop();
  });

  it("over it, strangers' cancellation emails are suppressed (never sent nor owed); a proven inbox's cancellation and every receipt still go", async () => {
    const product = await insertProduct(t.db.pool, { stock: 100, priceAmount: 1_000 });
    // a customer who has paid: a receipt went to the inbox, which proves it
    const customer = await stranger(t);
    const paid = await placeOrder(t.http, customer, [{ productId: product, quantity: 1 }]);
    await payOrder(t.http, customer, paid.body.id, 'succeeded');
    await smtp.awaitMessages(() => smtp.forOrder(paid.body.id), 2);
    await drain(worker, t.db.pool);

    // strangers, each one cancellation (far within their inboxes' own allowance): the budget's
    // worth go, the rest are held back — one account each, as a script registering thousands
    const strangers: Buyer[] = [];
    const byStrangers: string[] = [];
    for (let i = 0; i < BUDGET + 2; i++) {
      strangers.push(await stranger(t));
      byStrangers.push(await cancelledOrder(t, strangers[i], product));
      await drain(worker, t.db.pool);
    }
    const statuses = await cancellationStatuses(t, byStrangers);
    expect({ sent: count(statuses, 'sent'), suppressed: count(statuses, 'suppressed') }).toEqual({
      sent: BUDGET,
      suppressed: 2,
    });
    expect(byStrangers.flatMap((id) => smtp.forOrder(id))).toHaveLength(BUDGET);

    // the proven inbox's cancellation goes, over the budget, and is not counted against it
    const own = await cancelledOrder(t, customer, product);
    await drain(worker, t.db.pool);
    expect(await cancellationStatuses(t, [own])).toEqual(['sent']);
    expect(smtp.forOrder(own)).toHaveLength(1);

    // money moving is never held back: a stranger's payment is mailed its receipt and
    // confirmation, which prove that inbox — its next cancellation goes too
    const last = strangers[BUDGET + 1];
    const bought = await placeOrder(t.http, last, [{ productId: product, quantity: 1 }]);
    await payOrder(t.http, last, bought.body.id, 'succeeded');
    await smtp.awaitMessages(() => smtp.forOrder(bought.body.id), 2);
    await drain(worker, t.db.pool);
    const after = await cancelledOrder(t, last, product);
    await drain(worker, t.db.pool);
    expect(await cancellationStatuses(t, [after])).toEqual(['sent']);

    // a new stranger is still held back, and what was held back is not owed
    const more = await cancelledOrder(t, await stranger(t), product);
    await drain(worker, t.db.pool);
    expect(await cancellationStatuses(t, [more])).toEqual(['suppressed']);
    expect(smtp.forOrder(more)).toHaveLength(0);
    await t.db.pool.query(
      `UPDATE outbox SET published_at = published_at - interval '5 minutes' WHERE payload ->> 'orderId' = ANY($1)`,
      [[...byStrangers, more]],
    );
    expect(await worker.get(EmailReconciler).reconcile()).toBe(0);
    const rows = await t.db.pool.query<{ last_error: string }>(
      `SELECT last_error FROM email_deliveries WHERE order_id = $1`,
      [more],
    );
    expect(rows.rows[0].last_error).toMatch(/budget of cancellation emails to unproven inboxes/);

    // counted where the worker's metrics are scraped
    const metric = await worker
      .get(MetricsService)
      .registry.getSingleMetricAsString('cancellation_emails_suppressed_total');
    expect(metric).toContain('cancellation_emails_suppressed_total{reason="unproven_budget"} 3');
    expect(metric).toContain('cancellation_emails_suppressed_total{reason="inbox_allowance"} 0');
  }, 90_000);
});

describe('workers deciding at once never pass the budget between them', () => {
  let smtp: SmtpCapture;
  let t: TestApp;
  let workers: INestApplicationContext[];

  beforeAll(async () => {
    smtp = await SmtpCapture.start();
    t = await bootTestApp({
      env: {
        SMTP_URL: smtp.url,
        MAIL_FROM: 'Shop <orders@shop.example>',
        CANCELLATION_EMAILS_UNPROVEN_PER_DAY: String(BUDGET),
      },
    });
    workers = [await bootTestWorker(t.config), await bootTestWorker(t.config)];
  });
  afterAll(async () => {
    for (const w of workers ?? []) await w.close();
    await t?.close();
    await smtp?.stop();
  });

  it(`20 strangers' cancellations sent at once by two workers (their jobs and direct sends): exactly ${BUDGET} go`, async () => {
    const product = await insertProduct(t.db.pool, { stock: 100, priceAmount: 1_000 });
    const buyers = await Promise.all(Array.from({ length: 20 }, () => stranger(t)));
    const orders = await Promise.all(buyers.map((b) => cancelledOrder(t, b, product)));
    // besides the workers' own jobs (four at once each), every email sent by both at the same time
    await Promise.allSettled(
      workers.flatMap((w) =>
        orders.map((orderId) =>
          w.get(EmailService, { strict: false }).send({ orderId, kind: 'cancellation' }),
        ),
      ),
    );
    for (const w of workers) await drain(w, t.db.pool);
    const statuses = await cancellationStatuses(t, orders);
    expect({ sent: count(statuses, 'sent'), suppressed: count(statuses, 'suppressed') }).toEqual({
      sent: BUDGET,
      suppressed: orders.length - BUDGET,
    });
    expect(orders.flatMap((id) => smtp.forOrder(id))).toHaveLength(BUDGET);
  }, 90_000);
});
