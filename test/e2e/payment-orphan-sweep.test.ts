import { randomUUID } from 'node:crypto';
import { INestApplicationContext, Logger } from '@nestjs/common';
import type Stripe from 'stripe';
import { MetricsService } from '../../src/metrics/metrics.service';
import {
  PaymentOrphanSweep,
  RECONCILING_MS,
  SETTLE_MS,
  SweepOutcome,
} from '../../src/payments/payment-orphan-sweep';
import { SimulatedGateway } from '../../src/payments/simulated.gateway';
import { JobQueues } from '../../src/queue/job-queues';
import { JobName, QueueName } from '../../src/queue/queues';
import { drain } from '../support/drain';
import { FakeStripe, deliverSigned, startFakeStripe } from '../support/fake-stripe';
import { insertProduct, newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Seconds a test object is made (and paid) before now: half a minute past SETTLE_MS, so the next
 * run looks at it — and within the overlap (5 min) each pass reads before the watermark, which the
 * run before it left SETTLE_MS before its own start.
 */
const SETTLED_S = SETTLE_MS / 1000 + 30;
/** Paid this long ago, a payment still pending here is past what the reconciliation mends. */
const RECONCILED_S = RECONCILING_MS / 1000 + 30;

/** The sweep's state, as its table holds it. */
const sweepState = async (t: TestApp) =>
  (
    await t.db.pool.query<{
      checked_before: Date;
      pass_before: Date | null;
      pass_list: string | null;
      pass_after: string | null;
    }>(`SELECT checked_before, pass_before, pass_list, pass_after FROM payment_orphan_sweep`)
  ).rows[0];

/** The sweep has run for an hour: its watermark an hour ago, no pass under way. */
const sweptAnHourAgo = (t: TestApp) =>
  t.db.pool.query(
    `UPDATE payment_orphan_sweep SET checked_before = statement_timestamp() - interval '1 hour',
       pass_before = NULL, pass_list = NULL, pass_after = NULL`,
  );

/** `payment_orphans_found_total{kind}` of the worker's registry. */
const foundOf = async (worker: INestApplicationContext, kind: string) =>
  Number(
    new RegExp(`^payment_orphans_found_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(
      await worker.get(MetricsService).render(),
    )?.[1] ?? NaN,
  );

/** payment_orphan_sweep_lag_seconds as the worker's metrics show it. */
const lagOf = async (worker: INestApplicationContext) =>
  Number(
    /^payment_orphan_sweep_lag_seconds ([\d.e+-]+)$/m.exec(
      await worker.get(MetricsService).render(),
    )?.[1] ?? NaN,
  );

/** The error lines the sweep wrote, or those of them that name `id`. */
const sweepLines = (errors: jest.SpyInstance, id = '') =>
  errors.mock.calls
    .map((c) => String(c[0]))
    .filter(
      (line) => line.startsWith('payment orphan at the payment provider') && line.includes(id),
    );

/**
 * A webhook that never arrives (an endpoint misconfigured, Stripe giving up after three days, events
 * dropped in an outage) left money at Stripe with nothing here telling anyone: the reconciliation
 * reads only what the database has. The worker's sweep lists what Stripe made since its watermark
 * and raises each orphan once.
 */
describe('the payment orphan sweep (Stripe)', () => {
  let stripe: FakeStripe;
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let errors: jest.SpyInstance;

  const deliver = (event: Stripe.Event) => deliverSigned(t.http, stripe, event);
  /** An order of alice's whose payment has started at Stripe (its intent made, pending here). */
  const paying = async (priceAmount: number) => {
    const p = await insertProduct(t.db.pool, { stock: 5, priceAmount });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const pay = await t.http.post(
      `/v1/orders/${order.body.id}/payment`,
      {},
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(pay.status).toBe(201);
    return { orderId: order.body.id as string, intent: pay.body.paymentIntentId as string };
  };
  /** An order of alice's paid at Stripe, its success delivered and processed: CONFIRMED. */
  const paidOrder = async (priceAmount: number) => {
    const paid = await paying(priceAmount);
    await deliver(stripe.succeed(paid.intent));
    await waitFor('the order confirmed', async () =>
      (
        await t.db.pool.query(`SELECT 1 FROM orders WHERE id = $1 AND status = 'CONFIRMED'`, [
          paid.orderId,
        ])
      ).rows.length > 0
        ? true
        : undefined,
    );
    return paid;
  };
  /** One run of the sweep's job, added by hand and drained: what it answered. */
  const sweepJob = async (): Promise<SweepOutcome> => {
    const jobs = worker.get(JobQueues);
    const jobId = `test-sweep-${randomUUID()}`;
    await jobs.add(JobName.SweepPaymentOrphans, {}, { jobId });
    await drain(worker, t.db.pool, { queues: [QueueName.Payments] });
    return (await jobs.find(JobName.SweepPaymentOrphans, jobId))?.returnvalue as SweepOutcome;
  };

  beforeAll(async () => {
    stripe = await startFakeStripe();
    // no scheduler: each run here is the test's own job
    t = await bootTestApp({ env: { ...stripe.env(), PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: '0' } });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    await sweptAnHourAgo(t);
  });
  beforeEach(() => {
    errors = jest.spyOn(Logger.prototype, 'error');
  });
  afterEach(() => errors.mockRestore());
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await stripe?.close();
  });

  it("an intent paid at Stripe whose webhook never came is raised once (an error line, payment_orphans_found_total) and not again on the next run; the watermark advances; a paid order recorded here, another shop's intent, one paid too lately to judge: nothing", async () => {
    const before = await foundOf(worker, 'intent');
    const { checked_before: watermark } = await sweepState(t);

    // paid at Stripe, its webhook never came: its payment is pending here
    const lost = await paying(7300);
    stripe.succeed(lost.intent);
    stripe.backdate(lost.intent, RECONCILED_S);
    // paid past SETTLE_MS, its payment pending here: the reconciliation's to settle (its webhook
    // accepted and not processed, Stripe slow) — not raised before it has had the time (diff review)
    const waiting = await paying(5100);
    stripe.succeed(waiting.intent);
    stripe.backdate(waiting.intent, SETTLED_S);
    // paid and recorded: nothing to raise
    const kept = await paidOrder(6100);
    stripe.backdate(kept.intent, SETTLED_S);
    // another deployment's on the same account (another shop's id), and one naming no shop
    for (const shop of [randomUUID(), null]) {
      const theirs = await stripe.client().paymentIntents.create({
        amount: 5000,
        currency: 'inr',
        metadata: { orderId: randomUUID(), ...(shop ? { shop } : {}) },
      });
      stripe.succeed(theirs.id);
      stripe.backdate(theirs.id, SETTLED_S);
    }
    // made a while ago, paid a moment ago: its webhook may be on the way — not judged yet
    const lately = await paying(4400);
    stripe.backdate(lately.intent, SETTLED_S);
    stripe.succeed(lately.intent);

    const first = await sweepJob();
    expect(first).toEqual({
      kind: 'checked',
      checkedBefore: expect.any(String), // (the job's result, as JSON)
      found: 1,
      unsure: 2,
    });
    expect(sweepLines(errors, lost.intent)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^payment orphan at the payment provider, found by the sweep .*: intent ${lost.intent} \\(succeeded, 7300 INR, made \\S+\\) of order ${lost.orderId}: succeeded at the payment provider, but its payment is requires_payment_method here and the order PAYMENT_PENDING$`,
        ),
      ),
    ]);
    expect(sweepLines(errors)).toHaveLength(1);
    expect(await foundOf(worker, 'intent')).toBe(before + 1);
    // the watermark moved to the pass's end: SETTLE_MS before the run — and the gauge says how far
    // behind that leaves the sweep (it had been an hour behind: sweptAnHourAgo)
    const lag = await lagOf(worker);
    expect(lag).toBeGreaterThanOrEqual(SETTLE_MS / 1000);
    expect(lag).toBeLessThan(SETTLE_MS / 1000 + 60);
    const moved = await sweepState(t);
    expect(moved).toEqual({
      checked_before: new Date(first.kind === 'checked' ? first.checkedBefore : 0),
      pass_before: null,
      pass_list: null,
      pass_after: null,
    });
    expect(moved.checked_before.getTime()).toBeGreaterThan(watermark.getTime());
    expect(moved.checked_before.getTime()).toBeLessThanOrEqual(Date.now() - SETTLE_MS);

    // the next run lists it again (an intent's lifetime back): raised already, not again
    const second = await sweepJob();
    expect(second).toMatchObject({ kind: 'checked', found: 0 });
    expect(sweepLines(errors)).toHaveLength(1);
    expect(await foundOf(worker, 'intent')).toBe(before + 1);
    expect((await sweepState(t)).checked_before.getTime()).toBeGreaterThan(
      moved.checked_before.getTime(),
    );

    // the one paid lately, its webhook still not come once the time has passed: raised then
    stripe.backdate(lately.intent, RECONCILED_S);
    expect(await sweepJob()).toMatchObject({ kind: 'checked', found: 1 });
    expect(sweepLines(errors, lately.intent)).toHaveLength(1);
    expect(await foundOf(worker, 'intent')).toBe(before + 2);
  }, 60_000);

  it('a provider failing mid-run stops it: the watermark stays where it was, the lists read before it are not read again, and the next run raises what was left', async () => {
    const before = await foundOf(worker, 'dispute');
    const disputed = await paidOrder(6200);
    const dispute = (
      stripe.dispute(disputed.intent, 'needs_response', 'created').data.object as Stripe.Dispute
    ).id;
    stripe.backdate(dispute, SETTLED_S);
    await drain(worker, t.db.pool);
    const { checked_before: watermark } = await sweepState(t);

    // the disputes list fails (a 500 each of the SDK's three attempts)
    stripe.failNext('/v1/disputes', 500, 3);
    expect(await sweepJob()).toMatchObject({ kind: 'provider-unavailable', found: 0 });
    const stopped = await sweepState(t);
    expect(stopped).toMatchObject({ checked_before: watermark, pass_list: 'dispute' });
    // a run that stopped still tells how far behind the sweep is: from the watermark it left
    expect(await lagOf(worker)).toBeGreaterThanOrEqual(
      (Date.now() - watermark.getTime()) / 1000 - 5,
    );
    expect(sweepLines(errors, dispute)).toEqual([]);

    const asked = stripe.requests.length;
    const next = await sweepJob();
    expect(next).toMatchObject({ kind: 'checked', found: 1 });
    expect(
      stripe.requests
        .slice(asked)
        .filter((r) => r.method === 'GET')
        .map((r) => r.path),
    ).toEqual(['/v1/disputes']);
    expect(sweepLines(errors, dispute)).toEqual([
      expect.stringContaining(`dispute ${dispute} (needs_response, 6200 INR, opened `),
    ]);
    expect(await foundOf(worker, 'dispute')).toBe(before + 1);
    expect((await sweepState(t)).checked_before).toEqual(stopped.pass_before);
  }, 60_000);

  it('two runs at once raise an orphan once, and the watermark moves once', async () => {
    const before = await foundOf(worker, 'refund');
    const refunded = await paidOrder(6300);
    stripe.refundFromDashboard(refunded.intent, 1000); // its charge.refunded never delivered
    const refund = stripe.refundsOf(refunded.intent).at(-1)!.id;
    stripe.backdate(refund, SETTLED_S);
    await drain(worker, t.db.pool);
    // a pass under way, stopped before the refunds: both runs take it up from the same page
    stripe.failNext('/v1/refunds', 500, 3);
    expect(await sweepJob()).toMatchObject({ kind: 'provider-unavailable' });
    const stopped = await sweepState(t);
    expect(stopped.pass_list).toBe('refund');

    // side by side in one worker, past the job's pass lock: the database's guards alone
    const sweep = worker.get(PaymentOrphanSweep);
    const outcomes = await Promise.all([sweep.sweep(), sweep.sweep()]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['checked', 'raced']);
    expect(outcomes.reduce((n, o) => n + ('found' in o ? o.found : 0), 0)).toBe(1);
    expect(sweepLines(errors, refund)).toEqual([
      expect.stringContaining(`refund ${refund} (succeeded, 1000 INR, made `),
    ]);
    expect(await foundOf(worker, 'refund')).toBe(before + 1);
    expect((await sweepState(t)).checked_before).toEqual(stopped.pass_before);
    expect(
      (
        await t.db.pool.query(`SELECT finding FROM payment_orphan_reports WHERE provider_id = $1`, [
          refund,
        ])
      ).rows,
    ).toEqual([{ finding: 'refund' }]);
  }, 60_000);

  it('reads a few pages a run: a pass goes on at the next run from where it stopped, and the watermark moves only once every list was read', async () => {
    const lost = [];
    for (const amount of [5100, 5200, 5300]) {
      const order = await paying(amount);
      stripe.succeed(order.intent);
      stripe.backdate(order.intent, RECONCILED_S);
      lost.push(order);
    }
    const { checked_before: watermark } = await sweepState(t);
    const sweep = worker.get(PaymentOrphanSweep);
    const runs: SweepOutcome[] = [];
    for (let run = 0; run < 50; run++) {
      const outcome = await sweep.sweep({ pages: 1, pageSize: 2 });
      runs.push(outcome);
      if (outcome.kind !== 'more') break;
      // (the watermark held while the pass goes on)
      expect((await sweepState(t)).checked_before).toEqual(watermark);
    }
    expect(runs.at(-1)).toMatchObject({ kind: 'checked' });
    expect(runs.slice(0, -1).every((o) => o.kind === 'more')).toBe(true);
    expect(runs.length).toBeGreaterThan(3);
    expect(runs.reduce((n, o) => n + ('found' in o ? o.found : 0), 0)).toBe(3);
    for (const { intent } of lost) expect(sweepLines(errors, intent)).toHaveLength(1);
    expect((await sweepState(t)).checked_before.getTime()).toBeGreaterThan(watermark.getTime());
  }, 60_000);

  it('PAYMENT_ORPHAN_SWEEP_INTERVAL_MS schedules its job on the payments queue; 0 schedules none', async () => {
    const schedulers = async (w: INestApplicationContext) =>
      Object.fromEntries(
        (await w.get(JobQueues).queue(QueueName.Payments).getJobSchedulers()).map((j) => [
          j.key,
          j.every,
        ]),
      );
    // (this worker's, at 0: the reconciliation's is there, the sweep's is not)
    expect(
      await waitFor('the schedules registered', async () => {
        const held = await schedulers(worker);
        return held[JobName.ReconcilePayments] ? held : undefined;
      }),
    ).not.toHaveProperty(JobName.SweepPaymentOrphans);
    const hourly = await bootTestWorker({ ...t.config, paymentOrphanSweepIntervalMs: 3_600_000 });
    try {
      await waitFor('the sweep scheduled every hour', async () =>
        (await schedulers(hourly))[JobName.SweepPaymentOrphans] === 3_600_000 ? true : undefined,
      );
    } finally {
      await hourly.close();
    }
  }, 60_000);
});

describe('the payment orphan sweep (the simulated gateway)', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let alice: Buyer;
  let errors: jest.SpyInstance;

  beforeAll(async () => {
    t = await bootTestApp({ env: { PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: '0' } });
    worker = await bootTestWorker(t.config);
    [alice] = await buyers(t.http, 1);
    await sweptAnHourAgo(t);
    errors = jest.spyOn(Logger.prototype, 'error');
  });
  afterAll(async () => {
    errors?.mockRestore();
    await worker?.close();
    await t?.close();
  });

  it('lists its intents a page at a time and raises one paid without its event, once', async () => {
    const lost: string[] = [];
    for (const priceAmount of [3100, 3200]) {
      const p = await insertProduct(t.db.pool, { stock: 5, priceAmount });
      const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
      const pay = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect(pay.status).toBe(201);
      // the customer's payment app paid, and no event came
      expect(
        await worker.get(SimulatedGateway).settle(pay.body.paymentIntentId, 'succeeded'),
      ).not.toBeNull();
      lost.push(pay.body.paymentIntentId as string);
    }
    await t.db.pool.query(
      `UPDATE simulated_payment_intents
          SET created_at = created_at - $2 * interval '1 second', updated_at = updated_at - $2 * interval '1 second'
        WHERE id = ANY($1)`,
      [lost, RECONCILED_S],
    );
    const sweep = worker.get(PaymentOrphanSweep);
    const runs: SweepOutcome[] = [];
    for (let run = 0; run < 10 && runs.at(-1)?.kind !== 'checked'; run++)
      runs.push(await sweep.sweep({ pages: 1, pageSize: 1 }));
    expect(runs.map((o) => o.kind)).toEqual(['more', 'more', 'more', 'checked']);
    for (const intent of lost)
      expect(sweepLines(errors, intent)).toEqual([
        expect.stringContaining(`intent ${intent} (succeeded, `),
      ]);
    expect(await sweep.sweep()).toMatchObject({ kind: 'checked', found: 0 });
    expect(await foundOf(worker, 'intent')).toBe(2);
  }, 60_000);
});
