import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator, uuidFromName } from '../common/ids';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { GatewayError, GatewayRefund, PAYMENT_GATEWAY, PaymentGateway } from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';
import { NewRefund, Refund, RefundRepository } from './refund.repository';
import { RefundsService } from './refunds.service';
import { MetricsService } from '../metrics/metrics.service';

const NOW = new Date('2026-03-01T12:00:00Z');
const ORDER = '0c8e4f2a-1111-4222-8333-944445555666';
const ADMIN = 'user:9d2b7c1e-0000-4000-8000-000000000001';
const KEY = 'key-1';
/** The refund id an admin's Idempotency-Key names (the same on every retry). */
const REFUND_ID = uuidFromName(`refund:${ADMIN}:${KEY}`);

/** Only the members the service uses, each a jest.fn() with the real signature. */
type MockOf<T, K extends keyof T> = jest.Mocked<Pick<T, K>>;

const payment = (over: Partial<Payment> = {}): Payment => ({
  id: 'pay-1',
  orderId: ORDER,
  provider: 'simulated',
  intentId: 'pi_1',
  clientSecret: 'pi_1_secret',
  amount: 24_900,
  currency: 'INR',
  status: 'succeeded',
  ...over,
});

const refund = (over: Partial<Refund> = {}): Refund => ({
  id: REFUND_ID,
  orderId: ORDER,
  paymentId: 'pay-1',
  amount: 24_900,
  currency: 'INR',
  status: 'pending',
  reason: 'requested',
  requestedRest: false,
  providerRefundId: null,
  failure: null,
  requestKey: null,
  actor: ADMIN,
  createdAt: NOW,
  updatedAt: NOW,
  ...over,
});

const remote = (over: Partial<GatewayRefund> = {}): GatewayRefund => ({
  id: 're_1',
  intentId: 'pi_1',
  amount: 24_900,
  status: 'succeeded',
  refundId: REFUND_ID,
  ...over,
});

/**
 * The repository as a small in-memory table: `reserve` decides like the database does (what
 * remains of the captured amount, counting pending and succeeded refunds), so over-refunds and
 * the second of two racing refunds are refused by the same rule.
 */
function mockRefunds(captured = 24_900) {
  const rows = new Map<string, Refund>();
  const reserved = () =>
    [...rows.values()].filter((r) => r.status !== 'failed').reduce((sum, r) => sum + r.amount, 0);
  const settleRow = (
    id: string,
    to: 'succeeded' | 'failed',
    detail: { providerRefundId?: string; failure?: string },
  ) => {
    const row = rows.get(id);
    if (!row || row.status !== 'pending') return null;
    const settled: Refund = {
      ...row,
      status: to,
      providerRefundId: detail.providerRefundId ?? row.providerRefundId,
      failure: detail.failure ?? null,
    };
    rows.set(id, settled);
    return settled;
  };
  const repo: MockOf<
    RefundRepository,
    | 'reserve'
    | 'lockPayment'
    | 'findById'
    | 'findByProviderId'
    | 'findAutomatic'
    | 'findPending'
    | 'findStalePending'
    | 'settle'
    | 'attachProviderId'
    | 'reinstate'
    | 'reverse'
    | 'touch'
  > = {
    reserve: jest.fn(async (r: NewRefund, amount: number | null, at: Date) => {
      const want = amount ?? captured - reserved();
      if (want <= 0 || reserved() + want > captured) return null;
      const row = refund({
        ...r,
        createdAt: at,
        updatedAt: at,
        amount: want,
        requestedRest: r.reason === 'requested' ? amount === null : null,
        status: r.providerRefundId ? 'succeeded' : 'pending',
        providerRefundId: r.providerRefundId ?? null,
        requestKey: r.requestKey ?? null,
      });
      rows.set(row.id, row);
      return row;
    }),
    lockPayment: jest.fn().mockResolvedValue({ status: 'succeeded', amount: 0, refundReserved: 0 }),
    findById: jest.fn(async (id: string) => rows.get(id) ?? null),
    findByProviderId: jest.fn(
      async (id: string) => [...rows.values()].find((r) => r.providerRefundId === id) ?? null,
    ),
    findAutomatic: jest.fn(
      async (paymentId: string) =>
        [...rows.values()].find(
          (r) => r.paymentId === paymentId && r.reason === 'paid_after_cancel',
        ) ?? null,
    ),
    findPending: jest.fn(
      async (paymentId: string) =>
        [...rows.values()].find((r) => r.paymentId === paymentId && r.status === 'pending') ?? null,
    ),
    findStalePending: jest.fn(async (_before: Date, _limit?: number) =>
      [...rows.values()].filter((r) => r.status === 'pending'),
    ),
    settle: jest.fn(
      async (
        id: string,
        to: 'succeeded' | 'failed',
        detail: { providerRefundId?: string; failure?: string },
        _at: Date,
      ) => settleRow(id, to, detail),
    ),
    attachProviderId: jest.fn(async (id: string, providerRefundId: string, _at: Date) => {
      const row = rows.get(id);
      if (row?.status === 'pending')
        rows.set(id, { ...row, providerRefundId: row.providerRefundId ?? providerRefundId });
    }),
    reinstate: jest.fn(async (id: string, providerRefundId: string, final: string[], _at: Date) => {
      const row = rows.get(id);
      if (row?.status !== 'failed' || final.includes(row.failure ?? '')) return null;
      const back: Refund = { ...row, status: 'succeeded', providerRefundId, failure: null };
      rows.set(id, back);
      return back;
    }),
    reverse: jest.fn(async (id: string, failure: string, _at: Date) => {
      const row = rows.get(id);
      if (row?.status !== 'succeeded') return null;
      const reversed: Refund = { ...row, status: 'failed', failure };
      rows.set(id, reversed);
      return reversed;
    }),
    touch: jest.fn().mockResolvedValue(undefined),
  };
  return { repo, rows };
}

function mockPayments(): MockOf<
  PaymentRepository,
  | 'findByOrder'
  | 'findById'
  | 'noteRefundsChecked'
  | 'noteProviderPending'
  | 'databaseNow'
  | 'findRefundsToRecheck'
> {
  return {
    findRefundsToRecheck: jest.fn().mockResolvedValue([]),
    findByOrder: jest.fn().mockResolvedValue(payment()),
    findById: jest.fn().mockResolvedValue(payment()),
    noteRefundsChecked: jest.fn().mockResolvedValue(undefined),
    noteProviderPending: jest.fn().mockResolvedValue(undefined),
    databaseNow: jest.fn().mockResolvedValue(new Date()),
  };
}

function mockOrders(): MockOf<OrderRepository, 'statusOf'> {
  return { statusOf: jest.fn().mockResolvedValue('CONFIRMED') };
}

function mockTransitions(): MockOf<OrderTransitionsService, 'applyRefund' | 'withdrawRefund'> {
  return {
    applyRefund: jest.fn().mockResolvedValue(true),
    withdrawRefund: jest.fn().mockResolvedValue(true),
  };
}

function mockOutbox(): MockOf<OutboxRepository, 'add'> {
  return { add: jest.fn().mockResolvedValue(undefined) };
}

function mockGateway(): jest.Mocked<PaymentGateway> {
  return {
    provider: 'simulated',
    createIntent: jest.fn(),
    retrieveIntent: jest.fn(),
    cancelIntent: jest.fn(),
    createRefund: jest.fn(async (input) =>
      remote({ amount: input.amount, refundId: input.refundId }),
    ),
    listRefunds: jest.fn().mockResolvedValue([]),
    retrieveDispute: jest.fn(),
    listIntentsMade: jest.fn(),
    listRefundsMade: jest.fn(),
    listDisputesMade: jest.fn(),
  };
}

async function setup(opts: { captured?: number } = {}) {
  const refunds = mockRefunds(opts.captured);
  const m = {
    payments: mockPayments(),
    orders: mockOrders(),
    transitions: mockTransitions(),
    outbox: mockOutbox(),
    gateway: mockGateway(),
    // run() is generic: a plain jest.fn that runs the work in place
    tx: {
      run: jest.fn((work: () => Promise<unknown>) => work()),
      // (committed at once: run() above never fails after its work)
      afterCommitOrUnknown: jest.fn((fn: () => void) => fn()),
    },
  };
  let now = NOW;
  const clock: Pick<Clock, 'now'> = { now: () => now };
  const later = (ms: number) => (now = new Date(now.getTime() + ms));
  let n = 0;
  const ids: Pick<IdGenerator, 'uuid'> = { uuid: () => `generated-${++n}` };
  const reversals = jest.fn();
  const automaticFailures = jest.fn();
  const requestedFailures = jest.fn();
  const counters: Record<string, jest.Mock> = {
    refunds_reversed_total: reversals,
    automatic_refunds_failed_total: automaticFailures,
    requested_refunds_failed_total: requestedFailures,
  };
  const moduleRef = await Test.createTestingModule({
    providers: [
      RefundsService,
      {
        provide: MetricsService,
        useValue: {
          counter: (name: string) => ({ inc: counters[name] }),
        },
      },
      { provide: RefundRepository, useValue: refunds.repo },
      { provide: PaymentRepository, useValue: m.payments },
      { provide: OrderRepository, useValue: m.orders },
      { provide: OrderTransitionsService, useValue: m.transitions },
      { provide: OutboxRepository, useValue: m.outbox },
      { provide: PAYMENT_GATEWAY, useValue: m.gateway },
      { provide: TransactionHost, useValue: m.tx },
      { provide: Clock, useValue: clock },
      { provide: IdGenerator, useValue: ids },
    ],
  }).compile();
  return {
    service: moduleRef.get(RefundsService),
    refunds: refunds.repo,
    rows: refunds.rows,
    reversals,
    automaticFailures,
    requestedFailures,
    later,
    ...m,
  };
}

const domainCode = (err: unknown) => (err instanceof DomainError ? err.code : err);

describe('RefundsService', () => {
  beforeAll(() => Logger.overrideLogger(false)); // warnings are part of some cases

  describe('request (an admin refund)', () => {
    it('full: without an amount, all that remains is reserved, sent with the refund-derived key and settled', async () => {
      const s = await setup();
      const done = await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      expect(done).toMatchObject({
        id: REFUND_ID,
        amount: 24_900,
        status: 'succeeded',
        providerRefundId: 're_1',
      });
      expect(s.refunds.reserve).toHaveBeenCalledWith(
        {
          id: REFUND_ID,
          orderId: ORDER,
          paymentId: 'pay-1',
          currency: 'INR',
          reason: 'requested',
          actor: ADMIN,
          requestKey: KEY,
        },
        null,
        NOW,
      );
      expect(s.gateway.createRefund).toHaveBeenCalledWith(
        {
          intentId: 'pi_1',
          amount: 24_900,
          refundId: REFUND_ID,
          orderId: ORDER,
          idempotencyKey: `refund:${REFUND_ID}`,
          advanceKeyOnReplay: true, // (made just now: far from the day the provider keeps the key)
        },
        undefined, // no waitMs: the SDK's own timeout and retries
      );
      // the follow-up job is written with the pending refund; the order learns of the success
      expect(s.outbox.add).toHaveBeenCalledWith('refund.requested', ORDER, {
        orderId: ORDER,
        refundId: REFUND_ID,
      });
      expect(s.transitions.applyRefund).toHaveBeenCalledWith(
        ORDER,
        REFUND_ID,
        24_900,
        `refund:${ADMIN}`,
      );
    });

    it('partial: the amount asked for is reserved, the rest stays refundable', async () => {
      const s = await setup();
      const first = await s.service.request({
        orderId: ORDER,
        amount: 10_000,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      expect(first).toMatchObject({ amount: 10_000, status: 'succeeded' });
      expect(s.refunds.reserve).toHaveBeenCalledWith(
        expect.objectContaining({ id: REFUND_ID }),
        10_000,
        NOW,
      );
      const rest = await s.service.request({
        orderId: ORDER,
        actor: ADMIN,
        idempotencyKey: 'key-2',
      });
      expect(rest).toMatchObject({ amount: 14_900, status: 'succeeded' });
    });

    it('over-refund: more than remains refundable is refused before the provider is asked', async () => {
      const s = await setup();
      await s.service.request({
        orderId: ORDER,
        amount: 20_000,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      const over = s.service.request({
        orderId: ORDER,
        amount: 5_000,
        actor: ADMIN,
        idempotencyKey: 'key-2',
      });
      await expect(over.catch(domainCode)).resolves.toBe('REFUND_EXCEEDS_CAPTURED');
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
      const none = s.service.request({
        orderId: ORDER,
        amount: 4_900,
        actor: ADMIN,
        idempotencyKey: 'key-3',
      });
      await expect(none).resolves.toMatchObject({ amount: 4_900 }); // exactly what remains is fine
      const nothingLeft = s.service.request({
        orderId: ORDER,
        actor: ADMIN,
        idempotencyKey: 'key-4',
      });
      await expect(nothingLeft.catch(domainCode)).resolves.toBe('REFUND_EXCEEDS_CAPTURED');
    });

    it('concurrent: of two refunds racing for the whole amount, the reservation admits one; the other is refused', async () => {
      const s = await setup();
      const results = await Promise.allSettled([
        s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: 'key-a' }),
        s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: 'key-b' }),
      ]);
      expect(
        results
          .map((r) => (r.status === 'fulfilled' ? r.value.status : domainCode(r.reason)))
          .sort(),
      ).toEqual(['REFUND_EXCEEDS_CAPTURED', 'succeeded']);
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
      expect(s.rows.size).toBe(1);
    });

    it('duplicate: the same Idempotency-Key returns the refund it made, without reserving or refunding again', async () => {
      const s = await setup();
      const first = await s.service.request({
        orderId: ORDER,
        amount: 10_000,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      const again = await s.service.request({
        orderId: ORDER,
        amount: 10_000,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      expect(again).toEqual(first);
      expect(s.refunds.reserve).toHaveBeenCalledTimes(1);
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
      expect(s.transitions.applyRefund).toHaveBeenCalledTimes(1);
    });

    it('duplicate after a crash: a refund left pending is sent again with the same provider key', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'socket hang up'),
      );
      const cut = await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      expect(cut).toMatchObject({ id: REFUND_ID, status: 'pending' });
      expect(s.refunds.touch).toHaveBeenCalledWith(REFUND_ID, NOW);
      const retried = await s.service.request({
        orderId: ORDER,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      expect(retried).toMatchObject({ id: REFUND_ID, status: 'succeeded' });
      expect(s.refunds.reserve).toHaveBeenCalledTimes(1);
      expect(s.gateway.createRefund.mock.calls.map(([c]) => c.idempotencyKey)).toEqual([
        `refund:${REFUND_ID}`,
        `refund:${REFUND_ID}`,
      ]);
    });

    it("waitMs: the request's provider calls (the list of earlier attempts, then the new one) share one budget of waitMs, begun at the first of them", async () => {
      const s = await setup();
      const asked = { orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY };
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'insufficient_funds', 'refused'),
      );
      const began = performance.now();
      await s.service.request({ ...asked, waitMs: 5_000 }).catch(() => undefined);
      const first = s.gateway.createRefund.mock.calls[0][1];
      expect(first!.by).toBeGreaterThanOrEqual(began + 5_000);
      const retried = performance.now();
      await s.service.request({ ...asked, waitMs: 5_000 });
      const done = performance.now();
      const [[, listed]] = s.gateway.listRefunds.mock.calls;
      expect(listed!.by).toBeGreaterThanOrEqual(retried + 5_000);
      expect(listed!.by).toBeLessThanOrEqual(done + 5_000);
      expect(s.gateway.createRefund.mock.calls[1][1]).toBe(listed);
    });

    it('a retry after a refusal first asks the provider: an attempt it made after all is the answer, not a second refund', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'insufficient_funds', 'refused'),
      );
      await expect(
        s.service
          .request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY })
          .catch(domainCode),
      ).resolves.toBe('PAYMENT_PROVIDER_REJECTED');
      // yet the provider lists that attempt as made (the reinstate case)
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_late', amount: 1_000, refundId: REFUND_ID }),
      ]);
      const retried = await s.service.request({
        orderId: ORDER,
        amount: 1_000,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      expect(retried).toMatchObject({ id: REFUND_ID, status: 'succeeded', amount: 1_000 });
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
    });

    it('a retry while the provider still holds the refused attempt as pending: 503 retry later, never a second refund', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'insufficient_funds', 'refused'),
      );
      await s.service
        .request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY })
        .catch(() => undefined);
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_slow', amount: 1_000, status: 'pending', refundId: REFUND_ID }),
      ]);
      const err: unknown = await s.service
        .request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        options: { headers: { 'Retry-After': expect.any(String) } },
      });
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
    });

    it('the same key with another amount than its refund is refused (a key reused after its record expired)', async () => {
      const s = await setup();
      s.gateway.createRefund.mockResolvedValue(remote({ amount: 1_000 }));
      await s.service.request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY });
      const other = s.service.request({
        orderId: ORDER,
        amount: 500,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      await expect(other.catch(domainCode)).resolves.toBe('IDEMPOTENCY_KEY_REUSED');
    });

    describe("a key's lifetime (its record's: a day after its refund the key is a first request again)", () => {
      const DAY = 24 * 3600_000;
      const generationId = (key: string, g: number, n = 1) =>
        uuidFromName(`refund:${ADMIN}:${key}\ngeneration:${g}${n > 1 ? `\nattempt:${n}` : ''}`);
      const ask = (s: Awaited<ReturnType<typeof setup>>, key = KEY, amount = 1_000) =>
        s.service.request({ orderId: ORDER, amount, actor: ADMIN, idempotencyKey: key });

      it('within the day, the same ask continues its refund (a crash retried): no second one', async () => {
        const s = await setup();
        const first = await ask(s);
        expect(first.id).toBe(REFUND_ID); // the first generation's ids are what they always were
        s.later(DAY - 6 * 60_000);
        expect((await ask(s)).id).toBe(REFUND_ID);
        expect(s.refunds.reserve).toHaveBeenCalledTimes(1);
        expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
      });

      it('a day later, the same ask is a new refund of its own (a new generation), and another amount is no 422', async () => {
        const s = await setup();
        await ask(s);
        s.later(DAY);
        const second = await ask(s);
        expect(second).toMatchObject({ id: generationId(KEY, 2), status: 'succeeded' });
        expect((await ask(s)).id).toBe(second.id); // and within its own day, continued
        s.later(DAY);
        const third = await ask(s, KEY, 500);
        expect(third).toMatchObject({ id: generationId(KEY, 3), amount: 500 });
        expect(s.gateway.createRefund.mock.calls.map(([c]) => c.idempotencyKey)).toEqual([
          `refund:${REFUND_ID}`,
          `refund:${second.id}`,
          `refund:${third.id}`,
        ]);
      });

      it("a refused attempt in a later generation: its retry is that generation's next attempt", async () => {
        const s = await setup();
        await ask(s);
        s.later(DAY);
        s.gateway.createRefund.mockRejectedValueOnce(
          new GatewayError('rejected', 'insufficient_funds', 'refused'),
        );
        await expect(ask(s).catch(domainCode)).resolves.toBe('PAYMENT_PROVIDER_REJECTED');
        const retried = await ask(s);
        expect(retried).toMatchObject({ id: generationId(KEY, 2, 2), status: 'succeeded' });
      });

      it("a key spelled like another key's attempt names its own refund, never that one", async () => {
        const s = await setup();
        s.gateway.createRefund.mockRejectedValueOnce(
          new GatewayError('rejected', 'insufficient_funds', 'refused'),
        );
        await expect(ask(s).catch(domainCode)).resolves.toBe('PAYMENT_PROVIDER_REJECTED');
        const lookalike = await ask(s, `${KEY}:attempt:2`, 700);
        expect(lookalike.id).toBe(uuidFromName(`refund:${ADMIN}:${KEY}:attempt:2`));
        // the refused key's retry: its own second attempt, a refund of its own (not a 201 for
        // the lookalike's)
        const retried = await ask(s);
        expect(retried).toMatchObject({
          id: uuidFromName(`refund:${ADMIN}:${KEY}\nattempt:2`),
          amount: 1_000,
          status: 'succeeded',
        });
        expect(s.gateway.createRefund).toHaveBeenCalledTimes(3);
      });

      it("the previous build's later attempts (`:attempt:<n>`, no key recorded) are continued, never refunded beside", async () => {
        for (const status of ['succeeded', 'pending'] as const) {
          const s = await setup();
          s.gateway.createRefund.mockRejectedValueOnce(
            new GatewayError('rejected', 'insufficient_funds', 'refused'),
          );
          await expect(ask(s).catch(domainCode)).resolves.toBe('PAYMENT_PROVIDER_REJECTED');
          // the previous build's second attempt, made at the provider, its answer never stored
          const legacyId = uuidFromName(`refund:${ADMIN}:${KEY}:attempt:2`);
          await s.refunds.reserve(
            {
              id: legacyId,
              orderId: ORDER,
              paymentId: 'pay-1',
              currency: 'INR',
              reason: 'requested',
              actor: ADMIN,
              ...(status === 'succeeded' ? { providerRefundId: 're_legacy' } : {}),
            },
            1_000,
            NOW,
          );
          s.gateway.listRefunds.mockResolvedValue([
            remote({ id: 're_legacy', amount: 1_000, status, refundId: legacyId }),
          ]);
          const calls = s.gateway.createRefund.mock.calls.length;
          const retried = await ask(s);
          expect(retried.id).toBe(legacyId);
          // no second refund beside it: the provider is asked for none, or (still pending) for
          // that same refund again, under its own key
          const asked = s.gateway.createRefund.mock.calls
            .slice(calls)
            .map(([c]) => c.idempotencyKey);
          expect(asked).toEqual(status === 'pending' ? [`refund:${legacyId}`] : []);
        }
      });

      it("a key spelled like another key's generation names its own refund, never that one", async () => {
        const s = await setup();
        const lookalike = await ask(s, `${KEY}:generation:2`, 700);
        expect(lookalike.id).toBe(uuidFromName(`refund:${ADMIN}:${KEY}:generation:2`));
        await ask(s);
        s.later(DAY);
        const second = await ask(s);
        expect(second.id).toBe(generationId(KEY, 2));
        expect(second.id).not.toBe(lookalike.id);
        expect(second.amount).toBe(1_000);
      });
    });

    it('the same key used for another order is refused', async () => {
      const s = await setup();
      await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      const other = s.service.request({
        orderId: 'another-order',
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      await expect(other.catch(domainCode)).resolves.toBe('IDEMPOTENCY_KEY_REUSED');
    });

    it("refuses an amount in another currency than the payment's own, before any refund step", async () => {
      const s = await setup();
      const err: unknown = await s.service
        .request({
          orderId: ORDER,
          amount: 1_000,
          currency: 'EUR',
          actor: ADMIN,
          idempotencyKey: 'eur',
        })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'VALIDATION_FAILED',
        options: {
          errors: [{ field: 'amount.currency', message: `must be ${payment().currency}` }],
        },
      });
      expect(s.refunds.reserve).not.toHaveBeenCalled();
    });

    it('an unknown order is a 404; an order without a captured payment is not refundable', async () => {
      const s = await setup();
      s.orders.statusOf.mockResolvedValueOnce(null);
      s.payments.findByOrder.mockResolvedValueOnce(null);
      const unknown = s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      await expect(unknown.catch(domainCode)).resolves.toBe('ORDER_NOT_FOUND');
      s.payments.findByOrder.mockResolvedValueOnce(null);
      const unpaid = s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      await expect(unpaid.catch(domainCode)).resolves.toBe('ORDER_NOT_REFUNDABLE');
      s.payments.findByOrder.mockResolvedValueOnce(payment({ status: 'processing' }));
      const inFlight = s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      await expect(inFlight.catch(domainCode)).resolves.toBe('ORDER_NOT_REFUNDABLE');
      expect(s.refunds.reserve).not.toHaveBeenCalled();
    });

    it('a payment recorded as succeeded for an order not yet moved to PAID is not refunded yet (409, retry shortly)', async () => {
      for (const status of ['INVENTORY_RESERVED', 'PAYMENT_PENDING'] as const) {
        const s = await setup();
        s.orders.statusOf.mockResolvedValueOnce(status);
        const err: unknown = await s.service
          .request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY })
          .catch((e: unknown) => e);
        expect(err).toMatchObject({
          code: 'ORDER_NOT_REFUNDABLE',
          options: { headers: { 'Retry-After': '30' } },
        });
        expect(s.refunds.reserve).not.toHaveBeenCalled();
      }
    });

    it('a refusal by the provider fails the refund (its reservation given back) and says why', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'amount_too_large', 'too much'),
      );
      // (an amount asked: "all that remains" refused so is asked once more, after the provider's list)
      const tooMuch = s.service.request({
        orderId: ORDER,
        amount: 24900,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      await expect(tooMuch.catch(domainCode)).resolves.toBe('REFUND_EXCEEDS_CAPTURED');
      expect(s.refunds.settle).toHaveBeenCalledWith(
        REFUND_ID,
        'failed',
        { failure: 'amount_too_large' },
        NOW,
      );
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'charge_disputed', 'disputed'),
      );
      const refused = s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: 'key-2' });
      await expect(refused.catch(domainCode)).resolves.toBe('PAYMENT_PROVIDER_REJECTED');
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
    });

    it('pending at the provider: the provider id is kept and the refund stays pending (its events settle it)', async () => {
      const s = await setup();
      s.gateway.createRefund.mockResolvedValueOnce(remote({ status: 'pending' }));
      const pending = await s.service.request({
        orderId: ORDER,
        actor: ADMIN,
        idempotencyKey: KEY,
      });
      expect(pending).toMatchObject({ status: 'pending' });
      expect(s.refunds.attachProviderId).toHaveBeenCalledWith(REFUND_ID, 're_1', NOW);
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
    });

    it('a refund of a cancelled order leaves its status and still tells the customer (order.refunded)', async () => {
      const s = await setup();
      s.transitions.applyRefund.mockResolvedValue(false);
      await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      expect(s.outbox.add).toHaveBeenCalledWith('order.refunded', ORDER, {
        orderId: ORDER,
        refundId: REFUND_ID,
      });
    });
  });

  describe('refundPaidAfterCancel (automatic)', () => {
    it('refunds the whole payment once, deciding under the payment row lock', async () => {
      const s = await setup();
      const first = await s.service.refundPaidAfterCancel(payment());
      expect(first).toMatchObject({
        reason: 'paid_after_cancel',
        actor: 'system:payments',
        amount: 24_900,
        status: 'succeeded',
      });
      expect(s.refunds.lockPayment.mock.invocationCallOrder[0]).toBeLessThan(
        s.refunds.findAutomatic.mock.invocationCallOrder[0],
      );
      const again = await s.service.refundPaidAfterCancel(payment());
      expect(again).toEqual(first);
      expect(s.refunds.reserve).toHaveBeenCalledTimes(1);
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
    });

    it('a refund the provider refuses is raised once (error log, automatic_refunds_failed_total); an admin refund refused is not', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'charge_disputed', 'disputed'),
      );
      expect(await s.service.refundPaidAfterCancel(payment())).toMatchObject({
        status: 'failed',
        actor: 'system:payments',
      });
      expect(await s.service.refundPaidAfterCancel(payment())).toMatchObject({ status: 'failed' }); // a rerun
      expect(s.automaticFailures).toHaveBeenCalledTimes(1);

      const admin = await setup();
      admin.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'charge_disputed', 'disputed'),
      );
      await admin.service
        .request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: 'k' })
        .catch(() => undefined);
      expect(admin.automaticFailures).not.toHaveBeenCalled();
      // (its request answers the refusal to the admin: nothing else to raise)
      expect(admin.requestedFailures).not.toHaveBeenCalled();

      // refused as more than is left (a dashboard refund came first): the rest is handled, no alert
      const exceeded = await setup();
      exceeded.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'amount_too_large', 'too much'),
      );
      expect(await exceeded.service.refundPaidAfterCancel(payment())).toMatchObject({
        status: 'failed',
      });
      expect(exceeded.automaticFailures).not.toHaveBeenCalled();
    });

    it('a refund the provider accepts and later fails is raised once too', async () => {
      const s = await setup();
      s.gateway.createRefund.mockResolvedValueOnce(
        remote({ id: 're_auto', amount: 24_900, refundId: undefined, status: 'pending' }),
      );
      const pending = await s.service.refundPaidAfterCancel(payment());
      expect(pending).toMatchObject({ status: 'pending' });
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_auto', amount: 24_900, refundId: pending!.id, status: 'failed' }),
      ]);
      await s.service.syncFromGateway(payment());
      await s.service.syncFromGateway(payment());
      expect(s.rows.get(pending!.id)).toMatchObject({ status: 'failed' });
      expect(s.automaticFailures).toHaveBeenCalledTimes(1);
    });

    it("an admin's refund answered as pending that the provider then fails, or refuses on a later attempt, is raised once (error log, requested_refunds_failed_total)", async () => {
      const s = await setup();
      const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      try {
        s.gateway.createRefund.mockResolvedValueOnce(
          remote({ id: 're_held', amount: 1_000, refundId: undefined, status: 'pending' }),
        );
        const held = await s.service.request({
          orderId: ORDER,
          amount: 1_000,
          actor: ADMIN,
          idempotencyKey: 'held',
        });
        expect(held).toMatchObject({ status: 'pending' });
        s.gateway.listRefunds.mockResolvedValue([
          remote({ id: 're_held', amount: 1_000, refundId: held.id, status: 'failed' }),
        ]);
        await s.service.syncFromGateway(payment());
        await s.service.syncFromGateway(payment());
        expect(s.rows.get(held.id)).toMatchObject({ status: 'failed' });
        expect(s.requestedFailures).toHaveBeenCalledTimes(1);
        expect(s.automaticFailures).not.toHaveBeenCalled();
        expect(errors.mock.calls.map(([m]) => String(m))).toEqual([
          expect.stringMatching(/requested by .*answered as pending, failed .*not refunded/),
        ]);

        // no answer in its request (pending), then refused by its follow-up job's attempt
        const late = await setup();
        late.gateway.createRefund
          .mockRejectedValueOnce(new GatewayError('unavailable', undefined, 'timeout'))
          .mockRejectedValueOnce(new GatewayError('rejected', 'charge_disputed', 'disputed'));
        const unanswered = await late.service.request({
          orderId: ORDER,
          amount: 1_000,
          actor: ADMIN,
          idempotencyKey: 'late',
        });
        expect(unanswered).toMatchObject({ status: 'pending' });
        expect(await late.service.settlePending(unanswered.id)).toBe('failed');
        expect(late.requestedFailures).toHaveBeenCalledTimes(1);
      } finally {
        errors.mockRestore();
      }
    });

    it('nothing left to refund: null, and no provider call', async () => {
      const s = await setup({ captured: 0 });
      expect(await s.service.refundPaidAfterCancel(payment())).toBeNull();
      expect(s.gateway.createRefund).not.toHaveBeenCalled();
    });
  });

  describe('syncFromGateway (the provider list after charge.refunded)', () => {
    it('settles our pending refund, reinstates one we had failed, adopts one made at the provider', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({
        orderId: ORDER,
        amount: 5_000,
        actor: ADMIN,
        idempotencyKey: 'pending',
      });
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('rejected', 'charge_disputed', 'disputed'),
      );
      await s.service
        .request({ orderId: ORDER, amount: 6_000, actor: ADMIN, idempotencyKey: 'failed' })
        .catch(() => undefined);
      const pendingId = uuidFromName(`refund:${ADMIN}:pending`);
      const failedId = uuidFromName(`refund:${ADMIN}:failed`);
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_p', amount: 5_000, refundId: pendingId }),
        remote({ id: 're_f', amount: 6_000, refundId: failedId }),
        remote({ id: 're_dashboard', amount: 3_000, refundId: undefined }),
        remote({ id: 're_failed_there', amount: 1_000, refundId: undefined, status: 'failed' }),
      ]);
      s.transitions.applyRefund.mockClear();

      await s.service.syncFromGateway(payment());

      expect(s.rows.get(pendingId)).toMatchObject({
        status: 'succeeded',
        providerRefundId: 're_p',
      });
      expect(s.refunds.reinstate).toHaveBeenCalledWith(
        failedId,
        're_f',
        ['reversed_at_provider', 'failed_at_provider'],
        NOW,
      );
      expect(s.rows.get(failedId)).toMatchObject({ status: 'succeeded' });
      const adopted = [...s.rows.values()].find((r) => r.providerRefundId === 're_dashboard');
      expect(adopted).toMatchObject({
        reason: 'external',
        actor: 'system:provider',
        amount: 3_000,
        status: 'succeeded',
      });
      expect([...s.rows.values()].some((r) => r.providerRefundId === 're_failed_there')).toBe(
        false,
      );
      expect(s.transitions.applyRefund.mock.calls.map(([, id, amount]) => [id, amount])).toEqual([
        [pendingId, 5_000],
        [failedId, 6_000],
        [adopted!.id, 3_000],
      ]);

      // a second pass (the same event again) changes nothing
      s.transitions.applyRefund.mockClear();
      await s.service.syncFromGateway(payment());
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
      expect(s.rows.size).toBe(3);
    });
  });

  describe('syncFromGateway: a refund the provider reversed after reporting it succeeded (the bank returned it)', () => {
    it('is raised once (error log, refunds_reversed_total), becomes failed and comes off the order; the amount fits again', async () => {
      const s = await setup({ captured: 10_000 });
      await s.service.request({ orderId: ORDER, amount: 4_000, actor: ADMIN, idempotencyKey: 'k' });
      const ours = [...s.rows.values()].find((r) => r.status === 'succeeded')!;
      s.transitions.applyRefund.mockClear();
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: ours.providerRefundId!, amount: 4_000, refundId: ours.id, status: 'failed' }),
      ]);
      await s.service.syncFromGateway(payment());
      await s.service.syncFromGateway(payment()); // the next refund event of the payment
      expect(s.reversals).toHaveBeenCalledTimes(1);
      expect(s.rows.get(ours.id)).toMatchObject({
        status: 'failed',
        failure: 'reversed_at_provider',
      });
      expect(s.transitions.withdrawRefund).toHaveBeenCalledTimes(1);
      expect(s.transitions.withdrawRefund).toHaveBeenCalledWith(
        ORDER,
        ours.id,
        4_000,
        'refund:provider',
      );
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
      // all of the capture is refundable again
      const again = await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: 'k2' });
      expect(again).toMatchObject({ amount: 10_000, status: 'succeeded' });
    });
  });

  describe('syncFromGateway: a list read before a reversal committed (another pass, still showing it succeeded)', () => {
    it('does not reinstate the reversed refund: it stays failed, off the order, and is announced once', async () => {
      const s = await setup({ captured: 10_000 });
      await s.service.request({ orderId: ORDER, amount: 4_000, actor: ADMIN, idempotencyKey: 'k' });
      const ours = [...s.rows.values()].find((r) => r.status === 'succeeded')!;
      s.transitions.applyRefund.mockClear();
      const succeeded = remote({ id: ours.providerRefundId!, amount: 4_000, refundId: ours.id });
      // pass A reads the list (still succeeded) and waits on the provider's answer meanwhile ...
      let answerA!: (list: GatewayRefund[]) => void;
      s.gateway.listRefunds.mockImplementationOnce(
        () => new Promise((resolve) => (answerA = resolve)),
      );
      const passA = s.service.syncFromGateway(payment());
      // ... pass B (the reversal's event) reads it failed and records the reversal
      s.gateway.listRefunds.mockResolvedValueOnce([{ ...succeeded, status: 'failed' }]);
      await s.service.syncFromGateway(payment());
      answerA([succeeded]);
      await passA;
      expect(s.rows.get(ours.id)).toMatchObject({
        status: 'failed',
        failure: 'reversed_at_provider',
      });
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
      expect(s.reversals).toHaveBeenCalledTimes(1);
      // the amount is refundable again (it was not reserved back)
      const again = await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: 'k2' });
      expect(again).toMatchObject({ amount: 10_000, status: 'succeeded' });
    });
  });

  describe('syncFromGateway: a list read before the provider failed a refund still pending with us', () => {
    it("does not reinstate it: the provider's failed is final; it stays failed, never announced", async () => {
      const s = await setup({ captured: 10_000 });
      // ours: asked, no answer yet (pending)
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({ orderId: ORDER, amount: 4_000, actor: ADMIN, idempotencyKey: 'k' });
      const oursId = uuidFromName(`refund:${ADMIN}:k`);
      expect(s.rows.get(oursId)).toMatchObject({ status: 'pending' });
      s.transitions.applyRefund.mockClear();
      const succeeded = remote({ id: 're_1', amount: 4_000, refundId: oursId });
      // pass A (the success's event) reads the list, succeeded, and is slow …
      let answerA!: (list: GatewayRefund[]) => void;
      s.gateway.listRefunds.mockImplementationOnce(
        () => new Promise((resolve) => (answerA = resolve)),
      );
      const passA = s.service.syncFromGateway(payment());
      // … pass B (the failure's event) settles ours as failed at the provider
      s.gateway.listRefunds.mockResolvedValueOnce([{ ...succeeded, status: 'failed' }]);
      await s.service.syncFromGateway(payment());
      expect(s.rows.get(oursId)).toMatchObject({ status: 'failed', failure: 'failed_at_provider' });
      answerA([succeeded]);
      await passA;
      expect(s.rows.get(oursId)).toMatchObject({ status: 'failed', failure: 'failed_at_provider' });
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
    });
  });

  describe('syncFromGateway: a refund made at the provider for a payment not recorded as succeeded', () => {
    it('is thrown (the event is retried once the success is ours), not logged and dropped', async () => {
      const s = await setup({ captured: 10_000 });
      s.refunds.lockPayment.mockResolvedValue({
        status: 'requires_payment_method',
        amount: 0,
        refundReserved: 0,
      });
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_early', amount: 3_000, refundId: undefined }),
      ]);
      await expect(s.service.syncFromGateway(payment())).rejects.toThrow(
        /not recorded as succeeded yet/,
      );
      expect([...s.rows.values()].some((r) => r.providerRefundId === 're_early')).toBe(false);
      expect(s.transitions.applyRefund).not.toHaveBeenCalled();
    });

    it('is logged and left for a payment recorded as canceled (it never becomes succeeded: no endless retry)', async () => {
      const s = await setup({ captured: 10_000 });
      s.refunds.lockPayment.mockResolvedValue({ status: 'canceled', amount: 0, refundReserved: 0 });
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_odd', amount: 3_000, refundId: undefined }),
      ]);
      await expect(s.service.syncFromGateway(payment())).resolves.toBeDefined();
      expect([...s.rows.values()].some((r) => r.providerRefundId === 're_odd')).toBe(false);
    });
  });

  describe('syncFromGateway: a dashboard refund while one of ours is pending', () => {
    it('is not dropped: thrown until ours settles (the provider refuses ours), then adopted', async () => {
      const s = await setup({ captured: 10_000 });
      // ours: 7,000 asked, no answer yet (pending)
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({
        orderId: ORDER,
        amount: 7_000,
        actor: ADMIN,
        idempotencyKey: 'ours',
      });
      const oursId = uuidFromName(`refund:${ADMIN}:ours`);
      // meanwhile 5,000 refunded in the dashboard: both cannot fit in 10,000
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_dashboard', amount: 5_000, refundId: undefined }),
      ]);
      await expect(s.service.syncFromGateway(payment())).rejects.toThrow(
        /waits for the pending refunds/,
      );
      expect([...s.rows.values()].some((r) => r.providerRefundId === 're_dashboard')).toBe(false);
      // the provider refuses ours; the retried event adopts the dashboard's
      s.rows.set(oursId, { ...s.rows.get(oursId)!, status: 'failed' });
      await s.service.syncFromGateway(payment());
      expect([...s.rows.values()].find((r) => r.providerRefundId === 're_dashboard')).toMatchObject(
        {
          reason: 'external',
          amount: 5_000,
          status: 'succeeded',
        },
      );
    });
  });

  describe('settlePending (the refund.requested follow-up job)', () => {
    it('says what became of the refund: unknown, already settled, settled now, pending at the provider', async () => {
      const s = await setup();
      expect(await s.service.settlePending('nope')).toBe('unknown-refund');

      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({ orderId: ORDER, amount: 1_000, actor: ADMIN, idempotencyKey: KEY });
      expect(await s.service.settlePending(REFUND_ID)).toBe('succeeded');
      expect(await s.service.settlePending(REFUND_ID)).toBe('succeeded');

      s.gateway.createRefund.mockResolvedValueOnce(remote({ id: 're_2', status: 'pending' }));
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({
        orderId: ORDER,
        amount: 1_000,
        actor: ADMIN,
        idempotencyKey: 'key-2',
      }); // pending at provider
      const atProvider = uuidFromName(`refund:${ADMIN}:key-2`);
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_2', status: 'pending', refundId: atProvider }),
      ]);
      expect(await s.service.settlePending(atProvider)).toBe('pending-at-provider');
    });

    it('no answer from the provider throws, so the job is retried shortly', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({ orderId: ORDER, actor: ADMIN, idempotencyKey: KEY });
      await expect(s.service.settlePending(REFUND_ID)).rejects.toThrow(
        'no answer from the payment provider',
      );
    });
  });

  describe('recheckWatched (refunds of payments refunded lately, read again)', () => {
    it('a payment the provider is unavailable for goes to the back of the line, then the run ends (first in line, it stopped every run at itself)', async () => {
      const s = await setup();
      s.payments.findRefundsToRecheck.mockResolvedValue([
        payment({ id: 'pay-stuck', intentId: 'pi_stuck' }),
        payment({ id: 'pay-next', intentId: 'pi_next' }),
      ]);
      s.gateway.listRefunds.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      expect(await s.service.recheckWatched()).toBe(0);
      expect(s.payments.noteRefundsChecked.mock.calls).toEqual([['pay-stuck', expect.any(Date)]]);
      expect(s.gateway.listRefunds).toHaveBeenCalledTimes(1); // the next waits for the next run
    });
  });

  describe('retryStale (the last net)', () => {
    it('sends never-answered refunds again and reads the provider for the ones it holds as pending', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await s.service.request({
        orderId: ORDER,
        amount: 1_000,
        actor: ADMIN,
        idempotencyKey: 'never-answered',
      });
      s.gateway.createRefund.mockResolvedValueOnce(remote({ id: 're_held', status: 'pending' }));
      await s.service.request({
        orderId: ORDER,
        amount: 1_000,
        actor: ADMIN,
        idempotencyKey: 'held',
      });
      const held = uuidFromName(`refund:${ADMIN}:held`);
      s.gateway.listRefunds.mockResolvedValue([
        remote({ id: 're_held', status: 'pending', refundId: held }),
      ]);
      s.refunds.touch.mockClear();

      expect(await s.service.retryStale(60_000)).toBe(1);
      expect(s.refunds.findStalePending).toHaveBeenCalledWith(new Date(NOW.getTime() - 60_000));
      expect(s.refunds.touch).toHaveBeenCalledWith(held, NOW); // still pending there: looked at again later
    });

    it("a refund older than the provider's memory of keys is looked for in its list before any resend: never a second refund", async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      for (const key of ['made', 'not-made', 'unlisted']) {
        await s.service.request({
          orderId: ORDER,
          amount: 1_000,
          actor: ADMIN,
          idempotencyKey: key,
        });
      }
      const [made, notMade, unlisted] = ['made', 'not-made', 'unlisted'].map((k) =>
        uuidFromName(`refund:${ADMIN}:${k}`),
      );
      // the answers were lost, then the shop was down for over a day: Stripe may have forgotten
      // the keys, so the same key could make each refund a second time
      const dayAgo = new Date(NOW.getTime() - 25 * 3600_000);
      for (const id of [made, notMade, unlisted])
        s.rows.set(id, { ...s.rows.get(id)!, createdAt: dayAgo });
      s.gateway.createRefund
        .mockReset()
        .mockImplementation(async (input) =>
          remote({ id: 're_now', amount: input.amount, refundId: input.refundId }),
        );
      s.gateway.listRefunds.mockResolvedValueOnce([
        remote({ id: 're_made', amount: 1_000, refundId: made }),
      ]); // for `made`
      s.gateway.listRefunds.mockResolvedValueOnce([
        remote({ id: 're_made', amount: 1_000, refundId: made }),
      ]); // for `not-made`
      s.gateway.listRefunds.mockRejectedValueOnce(
        new GatewayError('unavailable', undefined, 'timeout'),
      ); // for `unlisted`

      expect(await s.service.retryStale(60_000)).toBe(2);
      expect(s.rows.get(made)).toMatchObject({ status: 'succeeded', providerRefundId: 're_made' }); // settled from the list
      expect(s.rows.get(notMade)).toMatchObject({
        status: 'succeeded',
        providerRefundId: 're_now',
      }); // not there: sent
      expect(s.rows.get(unlisted)).toMatchObject({ status: 'pending' }); // no list, no resend
      expect(s.gateway.createRefund.mock.calls.map(([c]) => c.refundId)).toEqual([notMade]);
    });

    it('stops once the provider is unavailable: one timeout, not one per stale refund', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      for (const key of ['a', 'b', 'c']) {
        await s.service.request({
          orderId: ORDER,
          amount: 1_000,
          actor: ADMIN,
          idempotencyKey: key,
        });
      }
      s.gateway.createRefund.mockClear();
      expect(await s.service.retryStale(60_000)).toBe(0);
      expect(s.gateway.createRefund).toHaveBeenCalledTimes(1);
    });

    it('one refund that keeps failing is moved to the back and does not stop the others', async () => {
      const s = await setup();
      s.gateway.createRefund.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      for (const key of ['stuck', 'next']) {
        await s.service.request({
          orderId: ORDER,
          amount: 1_000,
          actor: ADMIN,
          idempotencyKey: key,
        });
      }
      const [stuck, next] = ['stuck', 'next'].map((k) => uuidFromName(`refund:${ADMIN}:${k}`));
      // the first one's payment cannot even be read (the database blinked for it); the next is answered
      s.payments.findById.mockImplementationOnce(async () => {
        throw new Error('Connection terminated unexpectedly');
      });
      s.gateway.createRefund
        .mockReset()
        .mockResolvedValue(remote({ id: 're_next', status: 'succeeded', refundId: next }));
      s.refunds.touch.mockClear();
      expect(await s.service.retryStale(60_000)).toBe(1);
      expect(s.payments.findById).toHaveBeenCalledTimes(2);
      expect(s.refunds.touch).toHaveBeenCalledWith(stuck, NOW);
    });
  });
});
