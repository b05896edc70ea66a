import { MetricsService } from '../metrics/metrics.service';
import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import type { OrderWithHistory } from '../orders/order.model';
import { OrderRepository } from '../orders/order.repository';
import type { OrderStatus } from '../orders/order-state-machine';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import {
  PaymentFinalizer,
  RECONCILE_AFTER_MS,
  UNPROCESSED_EVENT_AFTER_MS,
  STUCK_EVENT_MS,
  RETRY_REFUND_AFTER_MS,
  UNHANDLED_EVENT_GRACE_MS,
} from './payment-finalizer.service';
import { GatewayError, GatewayIntent, PAYMENT_GATEWAY, PaymentGateway } from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';
import type { Refund } from './refund.repository';
import { DisputeRepository } from './dispute.repository';
import { RefundsService } from './refunds.service';
import { ShopIdentity } from './shop-identity';
import { WebhookEvent, WebhookEventRepository } from './webhook-event.repository';

const NOW = new Date('2026-03-01T12:00:00Z');
const ORDER = '0c8e4f2a-1111-4222-8333-944445555666';
/** This shop's identity (ShopIdentity), and another deployment's on the same account. */
const SHOP = '5b0d9c1e-2222-4333-8444-a55556666777';
const OTHER_SHOP = '7e3a1f0b-3333-4444-8555-b66667777888';
const EVENT = 'evt_1';

/** Only the members the finalizer uses, each a jest.fn() with the real signature. */
type MockOf<T, K extends keyof T> = jest.Mocked<Pick<T, K>>;

const payment = (over: Partial<Payment> = {}): Payment => ({
  id: 'pay-1',
  orderId: ORDER,
  provider: 'simulated',
  intentId: 'pi_1',
  clientSecret: 'pi_1_secret',
  amount: 24_900,
  currency: 'INR',
  status: 'requires_payment_method',
  ...over,
});

const intent = (over: Partial<GatewayIntent> = {}): GatewayIntent => ({
  id: 'pi_1',
  clientSecret: 'pi_1_secret',
  status: 'succeeded',
  amount: 24_900,
  currency: 'INR',
  orderId: ORDER,
  ...over,
});

const event = (over: Partial<WebhookEvent> = {}): WebhookEvent => ({
  id: EVENT,
  type: 'payment_intent.succeeded',
  intentId: 'pi_1',
  processedAt: null,
  receivedAt: new Date(),
  ...over,
});

const orderIn = (status: OrderStatus): OrderWithHistory => ({
  id: ORDER,
  userId: 'u1',
  status,
  cancellationReason: null,
  currency: 'INR',
  totalAmount: 24_900,
  refundedAmount: 0,
  reservationExpiresAt: null,
  createdAt: NOW,
  updatedAt: NOW,
  items: [],
  history: [],
});

const refund = (over: Partial<Refund> = {}): Refund => ({
  id: 'r-1',
  orderId: ORDER,
  paymentId: 'pay-1',
  amount: 24_900,
  currency: 'INR',
  status: 'succeeded',
  reason: 'paid_after_cancel',
  requestedRest: null,
  providerRefundId: 're_1',
  failure: null,
  requestKey: null,
  actor: 'system:payments',
  createdAt: NOW,
  updatedAt: NOW,
  ...over,
});

function mockPayments(): MockOf<
  PaymentRepository,
  | 'findByIntent'
  | 'findByOrder'
  | 'recordIntent'
  | 'findStalePending'
  | 'findOpenOfCancelled'
  | 'setStatus'
  | 'setCaptured'
  | 'databaseNow'
> {
  return {
    findByIntent: jest.fn().mockResolvedValue(payment()),
    findByOrder: jest.fn().mockResolvedValue(payment()),
    recordIntent: jest.fn(),
    findStalePending: jest.fn().mockResolvedValue([]),
    findOpenOfCancelled: jest.fn().mockResolvedValue([]),
    setStatus: jest.fn().mockResolvedValue(undefined),
    setCaptured: jest.fn().mockResolvedValue(undefined),
    databaseNow: jest.fn(async () => new Date()),
  };
}

function mockEvents(): MockOf<
  WebhookEventRepository,
  'find' | 'markProcessed' | 'findUnprocessed' | 'noteSweepFailed' | 'objectOf'
> {
  return {
    find: jest.fn().mockResolvedValue(event()),
    // (the event's object not stored: read from the gateway, as before)
    objectOf: jest.fn().mockResolvedValue(null),
    markProcessed: jest.fn().mockResolvedValue(undefined),
    findUnprocessed: jest.fn().mockResolvedValue([]),
    noteSweepFailed: jest.fn().mockResolvedValue(undefined),
  };
}

function mockOrders(): MockOf<OrderRepository, 'findById' | 'statusOf'> {
  return {
    findById: jest.fn().mockResolvedValue(orderIn('PAID')),
    statusOf: jest.fn().mockResolvedValue('CONFIRMED'),
  };
}

function mockTransitions(): MockOf<OrderTransitionsService, 'markPaid' | 'confirm' | 'cancel'> {
  const moved = { changed: true, previous: null };
  return {
    markPaid: jest.fn().mockResolvedValue(moved),
    confirm: jest.fn().mockResolvedValue(moved),
    cancel: jest.fn().mockResolvedValue(moved),
  };
}

function mockRefunds(): MockOf<
  RefundsService,
  | 'syncFromGateway'
  | 'refundRestOfCancelled'
  | 'reservePaidAfterCancel'
  | 'refundPaidAfterCancel'
  | 'retryStale'
  | 'recheckWatched'
> {
  return {
    syncFromGateway: jest.fn().mockResolvedValue(undefined),
    refundRestOfCancelled: jest.fn().mockResolvedValue(null),
    reservePaidAfterCancel: jest
      .fn()
      .mockResolvedValue(refund({ status: 'pending', providerRefundId: null })),
    refundPaidAfterCancel: jest.fn().mockResolvedValue(refund()),
    retryStale: jest.fn().mockResolvedValue(0),
    recheckWatched: jest.fn().mockResolvedValue(0),
  };
}

function mockGateway(): jest.Mocked<PaymentGateway> {
  return {
    provider: 'simulated',
    createIntent: jest.fn(),
    retrieveIntent: jest.fn().mockResolvedValue(intent()),
    cancelIntent: jest.fn().mockResolvedValue(intent({ status: 'canceled' })),
    createRefund: jest.fn(),
    listRefunds: jest.fn().mockResolvedValue([]),
    retrieveDispute: jest.fn(),
    listIntentsMade: jest.fn(),
    listRefundsMade: jest.fn(),
    listDisputesMade: jest.fn(),
  };
}

/** A transaction host that runs the work in place and records that it did (run() is generic: no MockOf). */
function mockTx() {
  return {
    run: jest.fn((work: () => Promise<unknown>) => work()),
    // (committed at once: run() above never fails after its work)
    afterCommit: jest.fn((fn: () => void) => fn()),
    afterCommitOrUnknown: jest.fn((fn: () => void) => fn()),
  };
}

async function setup(opts: { counter?: () => { inc: jest.Mock } } = {}) {
  const m = {
    payments: mockPayments(),
    events: mockEvents(),
    orders: mockOrders(),
    transitions: mockTransitions(),
    refunds: mockRefunds(),
    gateway: mockGateway(),
    tx: mockTx(),
    disputes: {
      record: jest.fn(),
      findToRecheck: jest.fn().mockResolvedValue([]),
      claimDeadlinesNear: jest.fn().mockResolvedValue([]),
    },
  };
  const clock: Pick<Clock, 'now'> = { now: () => NOW };
  const ids: Pick<IdGenerator, 'uuid'> = { uuid: () => 'new-payment-id' };
  const moduleRef = await Test.createTestingModule({
    providers: [
      PaymentFinalizer,
      { provide: PaymentRepository, useValue: m.payments },
      { provide: WebhookEventRepository, useValue: m.events },
      { provide: OrderRepository, useValue: m.orders },
      { provide: OrderTransitionsService, useValue: m.transitions },
      { provide: RefundsService, useValue: m.refunds },
      { provide: DisputeRepository, useValue: m.disputes },
      { provide: PAYMENT_GATEWAY, useValue: m.gateway },
      { provide: TransactionHost, useValue: m.tx },
      { provide: Clock, useValue: clock },
      { provide: IdGenerator, useValue: ids },
      { provide: ShopIdentity, useValue: { id: jest.fn().mockResolvedValue(SHOP) } },
      {
        provide: MetricsService,
        useValue: { counter: opts.counter ?? (() => ({ inc: jest.fn() })) },
      },
    ],
  }).compile();
  return { finalizer: moduleRef.get(PaymentFinalizer), ...m };
}

describe('PaymentFinalizer', () => {
  beforeAll(() => Logger.overrideLogger(false)); // the order-story lines are not under test here

  describe('processEvent', () => {
    it('unknown-event: an id the inbox does not hold changes nothing', async () => {
      const s = await setup();
      s.events.find.mockResolvedValue(null);
      expect(await s.finalizer.processEvent(EVENT)).toEqual({
        kind: 'unknown-event',
        eventId: EVENT,
      });
      expect(s.gateway.retrieveIntent).not.toHaveBeenCalled();
      expect(s.events.markProcessed).not.toHaveBeenCalled();
    });

    it('no-payment: an event about no intent is marked processed and goes no further', async () => {
      const s = await setup();
      s.events.find.mockResolvedValue(event({ type: 'customer.created', intentId: null }));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
      expect(s.transitions.markPaid).not.toHaveBeenCalled();
    });

    it("an event of a type this release does not act on, about an intent, is left unprocessed for a release that does (a deploy's other worker), then set aside after an hour", async () => {
      const s = await setup();
      for (const [age, left] of [
        [0, true],
        [UNHANDLED_EVENT_GRACE_MS - 1, true],
        [UNHANDLED_EVENT_GRACE_MS, false],
      ] as const) {
        s.events.markProcessed.mockClear();
        s.events.find.mockResolvedValue(
          event({
            type: 'radar.early_fraud_warning.created',
            receivedAt: new Date(NOW.getTime() - age),
          }),
        );
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'unhandled',
          eventId: EVENT,
          left,
        });
        expect(s.events.markProcessed.mock.calls).toEqual(left ? [] : [[EVENT, NOW, 'unhandled']]);
        expect(s.events.noteSweepFailed.mock.calls).toEqual(left ? [[EVENT, NOW]] : []);
        s.events.noteSweepFailed.mockClear();
      }
      expect(s.payments.findByIntent).not.toHaveBeenCalled();
      expect(s.gateway.retrieveIntent).not.toHaveBeenCalled();
      expect(s.transitions.markPaid).not.toHaveBeenCalled();
    });

    it('no-payment: an intent the gateway does not know (not ours) is not adopted', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.gateway.retrieveIntent.mockRejectedValue(
        new GatewayError('rejected', 'resource_missing', 'no such intent'),
      );
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.payments.recordIntent).not.toHaveBeenCalled();
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
    });

    it.each([
      ['no order id', {}],
      ['an order id not as we write them', { orderId: 'ORD-123' }],
    ])(
      'no-payment: an intent event whose payload names %s is not ours, settled with no call to the gateway',
      async (_name, metadata) => {
        const s = await setup();
        s.payments.findByIntent.mockResolvedValue(null);
        s.events.objectOf.mockResolvedValue({ object: 'payment_intent', id: 'pi_1', metadata });
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'no-payment',
          eventId: EVENT,
        });
        expect(s.gateway.retrieveIntent).not.toHaveBeenCalled();
        expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
        // a charge's event carries the charge's metadata: the intent is read from the gateway
        s.events.find.mockResolvedValue(event({ type: 'charge.succeeded' }));
        s.gateway.retrieveIntent.mockRejectedValue(
          new GatewayError('rejected', 'resource_missing', 'no such intent'),
        );
        await s.finalizer.processEvent(EVENT);
        expect(s.gateway.retrieveIntent).toHaveBeenCalledWith('pi_1');
      },
    );

    it('no-payment: an intent of ours not paid yet whose order does not exist is not adopted', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.orders.findById.mockResolvedValue(null);
      s.gateway.retrieveIntent.mockResolvedValue(intent({ status: 'requires_payment_method' }));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.orders.findById).toHaveBeenCalledWith(ORDER);
      expect(s.payments.recordIntent).not.toHaveBeenCalled();
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
    });

    it.each([
      ['payment_intent.succeeded', {}, 'payment'],
      ['charge.succeeded', { status: 'processing', capturable: true }, 'payment'],
      ['charge.refunded', {}, 'refund'],
      ['charge.dispute.created', {}, 'dispute'],
    ] as const)(
      'orphan: %s of an intent of ours whose order the database does not have (a restore) is raised once, not dropped',
      async (type, over, news) => {
        const counted = { inc: jest.fn() };
        const s = await setup({ counter: () => counted });
        const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
        const id = `pi_orphan_${news}_${type.length}`;
        s.events.find.mockResolvedValue(event({ type, intentId: id }));
        s.payments.findByIntent.mockResolvedValue(null);
        s.orders.findById.mockResolvedValue(null);
        s.events.markProcessed.mockResolvedValueOnce(true).mockResolvedValueOnce(false);
        s.gateway.retrieveIntent.mockResolvedValue(intent({ id, shop: SHOP, ...over }));
        const orphan = { kind: 'orphan', eventId: EVENT, intentId: id, orderId: ORDER };
        expect(await s.finalizer.processEvent(EVENT)).toEqual(orphan);
        expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'orphan');
        expect(s.payments.recordIntent).not.toHaveBeenCalled();
        expect(s.transitions.markPaid).not.toHaveBeenCalled();
        expect(counted.inc).toHaveBeenCalledWith({ event: news });
        expect(errors).toHaveBeenCalledWith(
          expect.stringMatching(
            new RegExp(
              `^intent ${id} \\(\\w+, 24900 INR\\) names order ${ORDER}, which this database does not have`,
            ),
          ),
        );
        // a rerun of its job (the event marked already) raises nothing again
        counted.inc.mockClear();
        errors.mockClear();
        expect(await s.finalizer.processEvent(EVENT)).toEqual(orphan);
        expect(counted.inc).not.toHaveBeenCalledWith({ event: news });
        expect(errors).not.toHaveBeenCalled();
        errors.mockRestore();
      },
    );

    it.each([
      ['another shop', { shop: OTHER_SHOP }],
      ['no shop (made before intents carried it)', {}],
    ])(
      'no-payment: news of money about an intent naming an order as we write them and %s, whose order the database does not have, is not raised — no counter, no error line',
      async (_name, owner) => {
        const counted = { inc: jest.fn() };
        const s = await setup({ counter: () => counted });
        counted.inc.mockClear(); // (its series made at 0)
        const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
        s.payments.findByIntent.mockResolvedValue(null);
        s.orders.findById.mockResolvedValue(null);
        for (const [type, over] of [
          ['payment_intent.succeeded', {}],
          ['charge.succeeded', { status: 'processing', capturable: true }],
          ['charge.refunded', {}],
          ['charge.dispute.created', {}],
        ] as const) {
          s.events.find.mockResolvedValue(event({ type }));
          s.gateway.retrieveIntent.mockResolvedValue(intent({ ...owner, ...over }));
          expect(await s.finalizer.processEvent(EVENT)).toEqual({
            kind: 'no-payment',
            eventId: EVENT,
          });
        }
        expect(s.events.markProcessed.mock.calls).toEqual(
          Array.from({ length: 4 }, () => [EVENT, NOW, 'no-payment']),
        );
        expect(counted.inc).not.toHaveBeenCalled();
        expect(errors).not.toHaveBeenCalled();
        expect(s.payments.recordIntent).not.toHaveBeenCalled();
        errors.mockRestore();
      },
    );

    it('an intent naming another shop is adopted for an order this database has (its id and total: a restore from before shop_identity gave the database a new id), and is no-payment for one it has not', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.orders.findById.mockResolvedValue(orderIn('PAYMENT_PENDING'));
      for (const owner of [{ shop: OTHER_SHOP }, { shop: SHOP }, {}]) {
        s.gateway.retrieveIntent.mockResolvedValue(intent(owner));
        s.payments.recordIntent.mockResolvedValueOnce(payment({ status: 'succeeded' }));
        await s.finalizer.processEvent(EVENT);
      }
      expect(s.payments.recordIntent).toHaveBeenCalledTimes(3);
      s.orders.findById.mockResolvedValue(null);
      s.gateway.retrieveIntent.mockResolvedValue(intent({ shop: OTHER_SHOP }));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.payments.recordIntent).toHaveBeenCalledTimes(3);
    });

    it('no-payment: an intent event whose payload names another shop and an order this database has not is settled with no call to the gateway; one naming ours goes on', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.orders.findById.mockResolvedValueOnce(null); // the other shop's order: not here
      s.events.objectOf.mockResolvedValue({
        object: 'payment_intent',
        id: 'pi_1',
        metadata: { orderId: ORDER, shop: OTHER_SHOP },
      });
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.gateway.retrieveIntent).not.toHaveBeenCalled();
      s.events.objectOf.mockResolvedValue({
        object: 'payment_intent',
        id: 'pi_1',
        metadata: { orderId: ORDER, shop: SHOP },
      });
      s.payments.recordIntent.mockResolvedValue(payment());
      await s.finalizer.processEvent(EVENT);
      expect(s.gateway.retrieveIntent).toHaveBeenCalledWith('pi_1');
    });

    it.each([
      ['another amount', { amount: 1 }],
      ['another currency', { currency: 'USD' }],
      ['an order id not as we write them', { orderId: ORDER.toUpperCase() }],
      ['no order id', { orderId: '' }],
    ])(
      'no-payment: an intent made elsewhere for our order (%s) is not adopted',
      async (_name, differs) => {
        const s = await setup();
        s.payments.findByIntent.mockResolvedValue(null);
        s.gateway.retrieveIntent.mockResolvedValue({ ...intent(), ...differs });
        s.orders.findById.mockResolvedValue(orderIn('PAYMENT_PENDING'));
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'no-payment',
          eventId: EVENT,
        });
        expect(s.payments.recordIntent).not.toHaveBeenCalled();
        expect(s.transitions.markPaid).not.toHaveBeenCalled();
        expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
      },
    );

    it('no-payment: a second intent for an order already paid through another is not adopted, nor converged as that one', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.gateway.retrieveIntent.mockResolvedValue({
        ...intent(),
        id: 'pi_made_elsewhere',
        status: 'succeeded',
      });
      s.orders.findById.mockResolvedValue(orderIn('PAID'));
      s.payments.recordIntent.mockResolvedValue(payment()); // the order's standing payment, another intent
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'no-payment', eventId: EVENT });
      expect(s.gateway.retrieveIntent).toHaveBeenCalledTimes(1); // ours was not re-read on its event
      expect(s.transitions.markPaid).not.toHaveBeenCalled();
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'no-payment');
    });

    it('a gateway outage while adopting is thrown, so the job is retried', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.gateway.retrieveIntent.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await expect(s.finalizer.processEvent(EVENT)).rejects.toThrow('timeout');
      expect(s.events.markProcessed).not.toHaveBeenCalled();
    });

    it('adopts an intent that overtook its payment call (recorded from the gateway), then converges it', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(null);
      s.payments.recordIntent.mockResolvedValue(payment());
      s.orders.findById.mockResolvedValue(orderIn('PAID'));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'confirmed', orderId: ORDER });
      expect(s.payments.recordIntent).toHaveBeenCalledWith(
        'new-payment-id',
        'simulated',
        intent(),
        NOW,
      );
    });

    it('refunds-synced: a refund event converges our refunds with the provider, the order stays', async () => {
      const s = await setup();
      s.payments.findByIntent.mockResolvedValue(payment({ status: 'succeeded' }));
      s.orders.findById.mockResolvedValue(orderIn('CONFIRMED'));
      for (const type of ['charge.refunded', 'charge.refund.updated', 'refund.failed']) {
        s.events.find.mockResolvedValue(event({ type }));
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'refunds-synced',
          orderId: ORDER,
        });
      }
      expect(s.refunds.syncFromGateway).toHaveBeenCalledTimes(3);
      expect(s.refunds.syncFromGateway).toHaveBeenCalledWith(payment({ status: 'succeeded' }));
      expect(s.events.markProcessed).toHaveBeenCalledTimes(3);
      expect(s.transitions.markPaid).not.toHaveBeenCalled();
    });

    it('a refund event that overtakes the success: the payment is converged (order paid) before the refunds are synced', async () => {
      for (const [paymentStatus, orderStatus] of [
        ['requires_payment_method', 'PAYMENT_PENDING'],
        ['succeeded', 'PAYMENT_PENDING'],
        ['succeeded', 'INVENTORY_RESERVED'], // an intent adopted from the refund event itself
      ] as const) {
        const s = await setup();
        s.payments.findByIntent.mockResolvedValue(payment({ status: paymentStatus }));
        s.orders.findById.mockResolvedValue(orderIn(orderStatus));
        s.events.find.mockResolvedValue(event({ type: 'charge.refunded' }));
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'refunds-synced',
          orderId: ORDER,
        });
        expect(s.transitions.markPaid).toHaveBeenCalledWith(ORDER, 'system:payments');
        expect(s.transitions.markPaid.mock.invocationCallOrder[0]).toBeLessThan(
          s.refunds.syncFromGateway.mock.invocationCallOrder[0],
        );
      }
    });

    it("dispute: the dispute the event names is read from the gateway and recorded as it says, for the payment of the intent it says disputed (not the event's); the gateway unavailable, the job fails with nothing recorded", async () => {
      const s = await setup();
      s.events.find.mockResolvedValue(
        event({ type: 'charge.dispute.closed', intentId: 'pi_other' }),
      );
      s.events.objectOf.mockResolvedValue({
        object: 'dispute',
        id: 'dp_1',
        status: 'won',
        amount: 24_900,
        currency: 'inr',
        payment_intent: 'pi_other',
      });
      s.gateway.retrieveDispute.mockResolvedValue({
        id: 'dp_1',
        status: 'needs_response',
        amount: 24_900,
        currency: 'INR',
        reason: 'fraudulent',
        evidenceDueBy: NOW,
        intentId: 'pi_1',
      });
      s.disputes.record.mockResolvedValue({ first: true, status: 'needs_response' });
      expect(await s.finalizer.processEvent(EVENT)).toEqual({
        kind: 'dispute',
        orderId: ORDER,
        status: 'needs_response',
        changed: true,
      });
      expect(s.gateway.retrieveDispute).toHaveBeenCalledWith('dp_1');
      expect(s.payments.findByIntent.mock.calls).toEqual([['pi_1']]);
      // stamped with the database's clock before the provider was asked (its reports are
      // ordered by it: DisputeRepository#record)
      const readAt = await s.payments.databaseNow.mock.results[0].value;
      expect(s.payments.databaseNow.mock.invocationCallOrder[0]).toBeLessThan(
        s.gateway.retrieveDispute.mock.invocationCallOrder[0],
      );
      expect(s.disputes.record).toHaveBeenCalledWith(
        expect.objectContaining({
          id: 'dp_1',
          paymentId: 'pay-1',
          status: 'needs_response',
          readAt,
        }),
        NOW,
      );
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'dispute');

      s.disputes.record.mockClear();
      s.events.markProcessed.mockClear();
      s.gateway.retrieveDispute.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      await expect(s.finalizer.processEvent(EVENT)).rejects.toMatchObject({ kind: 'unavailable' });
      expect(s.disputes.record).not.toHaveBeenCalled();
      expect(s.events.markProcessed).not.toHaveBeenCalled();
    });

    it('confirmed: a succeeded intent makes the order PAID then CONFIRMED in one transaction, with the event marked', async () => {
      const s = await setup();
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'confirmed', orderId: ORDER });
      expect(s.tx.run).toHaveBeenCalledTimes(1);
      expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', 'succeeded', NOW);
      expect(s.transitions.markPaid).toHaveBeenCalledWith(ORDER, 'system:payments');
      expect(s.transitions.confirm).toHaveBeenCalledWith(ORDER, 'system:payments');
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'confirmed');
      expect(s.refunds.refundPaidAfterCancel).not.toHaveBeenCalled();
    });

    it.each([
      ['another amount', { amount: 1 }],
      ['another currency (the same amount)', { currency: 'USD' }],
      ['another amount and currency', { amount: 1, currency: 'USD' }],
    ])(
      'refunded-after-cancel: a payment that succeeded with %s than it was made for (changed at the provider) cancels the order as a failed payment and refunds what was taken; never confirms it',
      async (_name, differs) => {
        const s = await setup();
        s.gateway.retrieveIntent.mockResolvedValue(intent(differs));
        s.orders.findById.mockResolvedValue(orderIn('CANCELLED'));
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'refunded-after-cancel',
          orderId: ORDER,
          refundId: 'r-1',
        });
        expect(s.transitions.markPaid).not.toHaveBeenCalled();
        expect(s.transitions.confirm).not.toHaveBeenCalled();
        expect(s.transitions.cancel).toHaveBeenCalledWith(
          ORDER,
          'PAYMENT_FAILED',
          'system:payments',
        );
        const taken = { amount: 24_900, currency: 'INR', ...differs };
        expect(s.payments.setCaptured).toHaveBeenCalledWith(
          'pay-1',
          taken.amount,
          taken.currency,
          NOW,
        );
        expect(s.refunds.reservePaidAfterCancel).toHaveBeenCalledWith(
          expect.objectContaining({ id: 'pay-1', status: 'succeeded', ...taken }),
        );
        expect(s.refunds.refundPaidAfterCancel).toHaveBeenCalledWith(
          expect.objectContaining({ id: 'pay-1', ...taken }),
        );
      },
    );

    it('confirmed: an order already past PAID (a rerun) is not confirmed again', async () => {
      const s = await setup();
      s.orders.findById.mockResolvedValue(orderIn('CONFIRMED'));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'confirmed', orderId: ORDER });
      expect(s.transitions.confirm).not.toHaveBeenCalled();
    });

    it('refunded-after-cancel: the refund is reserved in the transaction that records the success, sent after it', async () => {
      const s = await setup();
      s.orders.findById.mockResolvedValue(orderIn('CANCELLED'));
      let inTransaction = false;
      let reservedInTransaction = false;
      s.tx.run.mockImplementation(async (work: () => Promise<unknown>) => {
        inTransaction = true;
        try {
          return await work();
        } finally {
          inTransaction = false;
        }
      });
      s.refunds.reservePaidAfterCancel.mockImplementation(async () => {
        reservedInTransaction = inTransaction;
        return refund({ status: 'pending', providerRefundId: null });
      });
      expect(await s.finalizer.processEvent(EVENT)).toEqual({
        kind: 'refunded-after-cancel',
        orderId: ORDER,
        refundId: 'r-1',
      });
      expect(s.transitions.confirm).not.toHaveBeenCalled();
      expect(reservedInTransaction).toBe(true);
      expect(s.refunds.reservePaidAfterCancel).toHaveBeenCalledWith(
        payment({ status: 'succeeded' }),
      );
      expect(s.refunds.reservePaidAfterCancel.mock.invocationCallOrder[0]).toBeLessThan(
        s.events.markProcessed.mock.invocationCallOrder[0],
      );
      expect(s.refunds.refundPaidAfterCancel).toHaveBeenCalledWith(
        payment({ status: 'succeeded' }),
      );
      expect(s.tx.run.mock.invocationCallOrder[0]).toBeLessThan(
        s.refunds.refundPaidAfterCancel.mock.invocationCallOrder[0],
      );
    });

    it('refunded-after-cancel: nothing left to refund (refunded before) still says so, without a refund id', async () => {
      const s = await setup();
      s.orders.findById.mockResolvedValue(orderIn('CANCELLED'));
      s.refunds.refundPaidAfterCancel.mockResolvedValue(null);
      expect(await s.finalizer.processEvent(EVENT)).toEqual({
        kind: 'refunded-after-cancel',
        orderId: ORDER,
        refundId: null,
      });
    });

    it('cancelled: a canceled intent cancels the order (PAYMENT_FAILED)', async () => {
      const s = await setup();
      s.gateway.retrieveIntent.mockResolvedValue(intent({ status: 'canceled' }));
      // not past its deadline: not the expiry's cancellation
      s.transitions.cancel.mockResolvedValueOnce({ changed: false, previous: null });
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'cancelled', orderId: ORDER });
      expect(s.transitions.cancel).toHaveBeenCalledWith(ORDER, 'PAYMENT_FAILED', 'system:payments');
      expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', 'canceled', NOW);
      expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'cancelled');
    });

    it('cancelled: a declined attempt cancels the intent first, then the order', async () => {
      const s = await setup();
      s.gateway.retrieveIntent.mockResolvedValue(
        intent({ status: 'requires_payment_method', lastError: 'card_declined' }),
      );
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'cancelled', orderId: ORDER });
      expect(s.gateway.cancelIntent).toHaveBeenCalledWith('pi_1');
      expect(s.transitions.cancel).toHaveBeenCalledWith(ORDER, 'PAYMENT_FAILED', 'system:payments');
    });

    it('confirmed: a payment that beat the cancel of a declined attempt at the gateway wins', async () => {
      const s = await setup();
      s.gateway.retrieveIntent.mockResolvedValue(
        intent({ status: 'requires_payment_method', lastError: 'card_declined' }),
      );
      s.gateway.cancelIntent.mockResolvedValue(intent({ status: 'succeeded' }));
      expect(await s.finalizer.processEvent(EVENT)).toEqual({ kind: 'confirmed', orderId: ORDER });
      expect(s.transitions.cancel).not.toHaveBeenCalled();
    });

    it.each(['processing', 'requires_payment_method'] as const)(
      'pending: a %s intent (no failed attempt) moves nothing; the event is still marked',
      async (status) => {
        const s = await setup();
        s.gateway.retrieveIntent.mockResolvedValue(intent({ status }));
        expect(await s.finalizer.processEvent(EVENT)).toEqual({
          kind: 'pending',
          orderId: ORDER,
          intentStatus: status,
        });
        expect(s.transitions.markPaid).not.toHaveBeenCalled();
        expect(s.transitions.cancel).not.toHaveBeenCalled();
        expect(s.gateway.cancelIntent).not.toHaveBeenCalled();
        expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', status, NOW);
        expect(s.events.markProcessed).toHaveBeenCalledWith(EVENT, NOW, 'pending');
      },
    );
  });

  describe('cancelIntentOf', () => {
    /** The order is CANCELLED and the intent succeeded: converged, i.e. refunded in full. */
    async function expectRefundedAfterCancel(s: Awaited<ReturnType<typeof setup>>): Promise<void> {
      s.orders.findById.mockResolvedValue(orderIn('CANCELLED'));
      expect(await s.finalizer.cancelIntentOf(ORDER)).toEqual({
        kind: 'refunded-after-cancel',
        orderId: ORDER,
        refundId: 'r-1',
      });
    }

    it('nothing-to-cancel: no payment, or one already canceled', async () => {
      const s = await setup();
      s.payments.findByOrder.mockResolvedValueOnce(null);
      expect(await s.finalizer.cancelIntentOf(ORDER)).toEqual({
        kind: 'nothing-to-cancel',
        orderId: ORDER,
      });
      s.payments.findByOrder.mockResolvedValueOnce(payment({ status: 'canceled' }));
      expect(await s.finalizer.cancelIntentOf(ORDER)).toEqual({
        kind: 'nothing-to-cancel',
        orderId: ORDER,
      });
      expect(s.gateway.cancelIntent).not.toHaveBeenCalled();
    });

    it('a payment already recorded as succeeded (the refund step failed last time): refunded on the rerun', async () => {
      const s = await setup();
      s.payments.findByOrder.mockResolvedValue(payment({ status: 'succeeded' }));
      s.gateway.retrieveIntent.mockResolvedValue(intent({ status: 'succeeded' }));
      await expectRefundedAfterCancel(s);
      expect(s.refunds.refundPaidAfterCancel).toHaveBeenCalledTimes(1);
      expect(s.gateway.cancelIntent).not.toHaveBeenCalled();
    });

    it('intent-cancelled: cancelled at the gateway, and recorded', async () => {
      const s = await setup();
      expect(await s.finalizer.cancelIntentOf(ORDER)).toEqual({
        kind: 'intent-cancelled',
        orderId: ORDER,
      });
      expect(s.gateway.cancelIntent).toHaveBeenCalledWith('pi_1');
      expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', 'canceled', NOW);
      expect(s.transitions.cancel).not.toHaveBeenCalled();
    });

    it('intent-open: an intent in flight cannot be cancelled; its status is recorded', async () => {
      const s = await setup();
      s.gateway.cancelIntent.mockResolvedValue(intent({ status: 'processing' }));
      expect(await s.finalizer.cancelIntentOf(ORDER)).toEqual({
        kind: 'intent-open',
        orderId: ORDER,
        intentStatus: 'processing',
      });
      expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', 'processing', NOW);
    });

    it('the customer paid just before the cancel: converged, i.e. refunded as the order is cancelled', async () => {
      const s = await setup();
      s.gateway.cancelIntent.mockResolvedValue(intent({ status: 'succeeded' }));
      await expectRefundedAfterCancel(s);
      expect(s.events.markProcessed).not.toHaveBeenCalled(); // no event involved
    });
  });

  describe('reconcile', () => {
    it('rechecks an open dispute unheard of for 6 hours: stamped with the database clock before the provider is asked, recorded with that stamp', async () => {
      const s = await setup();
      s.disputes.findToRecheck.mockResolvedValue([
        { id: 'dp_1', paymentId: 'pay-1', intentId: 'pi_1', orderId: ORDER },
      ]);
      s.gateway.retrieveDispute.mockResolvedValue({
        id: 'dp_1',
        status: 'under_review',
        amount: 24_900,
        currency: 'INR',
        reason: 'fraudulent',
        evidenceDueBy: NOW,
        intentId: 'pi_1',
      });
      s.disputes.record.mockResolvedValue({ first: false, status: 'under_review' });
      await s.finalizer.reconcile();
      expect(s.gateway.retrieveDispute).toHaveBeenCalledWith('dp_1');
      // the stamp taken last before the provider was asked
      const asked = s.gateway.retrieveDispute.mock.invocationCallOrder[0];
      const before = s.payments.databaseNow.mock.invocationCallOrder.filter((n) => n < asked);
      expect(before.length).toBeGreaterThan(0);
      const readAt = await s.payments.databaseNow.mock.results[before.length - 1].value;
      expect(s.disputes.record).toHaveBeenCalledWith(
        expect.objectContaining({ id: 'dp_1', paymentId: 'pay-1', status: 'under_review', readAt }),
        NOW,
      );
    });

    it('settles the stale payments of PAYMENT_PENDING orders from the gateway and retries stale refunds', async () => {
      const s = await setup();
      s.payments.findStalePending.mockResolvedValue([
        payment(),
        payment({ id: 'pay-2', orderId: 'other-order', intentId: 'pi_2' }),
      ]);
      s.gateway.retrieveIntent.mockImplementation(async (id) =>
        intent({ id, status: id === 'pi_1' ? 'succeeded' : 'processing' }),
      );
      s.refunds.retryStale.mockResolvedValue(2);
      expect(await s.finalizer.reconcile()).toBe(1 + 2); // one payment settled (the other still pending) + two refunds
      expect(s.payments.findStalePending).toHaveBeenCalledWith(
        new Date(NOW.getTime() - RECONCILE_AFTER_MS),
      );
      expect(s.refunds.retryStale).toHaveBeenCalledWith(RETRY_REFUND_AFTER_MS);
      expect(s.events.markProcessed).not.toHaveBeenCalled();
    });

    it('a stale payment that fails does not stop the others, nor the event and refund passes', async () => {
      const s = await setup();
      s.payments.findStalePending.mockResolvedValue([
        payment(),
        payment({ id: 'pay-2', orderId: 'other-order', intentId: 'pi_2' }),
      ]);
      // its own failure (the provider refuses to read it), not the gateway being down
      s.gateway.retrieveIntent.mockImplementation(async (id) => {
        if (id === 'pi_1')
          throw new GatewayError('rejected', 'resource_missing', 'No such payment_intent');
        return intent({ id, status: 'succeeded' });
      });
      s.refunds.retryStale.mockResolvedValue(1);
      expect(await s.finalizer.reconcile()).toBe(1 + 1);
      expect(s.transitions.markPaid).toHaveBeenCalledWith('other-order', 'system:payments');
      // the failing one goes to the back of the line (its last-seen status, touched)
      expect(s.payments.setStatus).toHaveBeenCalledWith('pay-1', 'requires_payment_method', NOW);
      expect(s.refunds.retryStale).toHaveBeenCalled();
    });

    it('stops asking the gateway once it is unavailable: one timeout per pass, not one per stale payment', async () => {
      const s = await setup();
      s.payments.findStalePending.mockResolvedValue(
        Array.from({ length: 50 }, (_, i) => payment({ id: `pay-${i}`, intentId: `pi_${i}` })),
      );
      s.payments.findOpenOfCancelled.mockResolvedValue(
        Array.from({ length: 50 }, (_, i) =>
          payment({ id: `c-${i}`, orderId: `o-${i}`, intentId: `pc_${i}` }),
        ),
      );
      s.gateway.retrieveIntent.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      s.gateway.cancelIntent.mockRejectedValue(
        new GatewayError('unavailable', undefined, 'timeout'),
      );
      s.payments.findByOrder.mockImplementation(async (orderId) => payment({ orderId }));
      await s.finalizer.reconcile();
      expect(s.gateway.retrieveIntent).toHaveBeenCalledTimes(1);
      expect(s.gateway.cancelIntent).toHaveBeenCalledTimes(1);
    });

    it('processes accepted events whose job gave up; one the gateway is unavailable for ends the run and goes to the back of the line (first in line, it stopped every run at itself)', async () => {
      const s = await setup();
      s.payments.findStalePending.mockResolvedValue([]);
      s.refunds.retryStale.mockResolvedValue(0);
      s.events.findUnprocessed.mockResolvedValue(['evt_lost', 'evt_still_failing', 'evt_next']);
      s.events.find.mockImplementation(async (id) => ({
        id,
        type: 'payment_intent.succeeded',
        intentId: 'pi_1',
        processedAt: null,
        receivedAt: new Date(),
      }));
      s.payments.findByIntent.mockResolvedValue(payment());
      s.gateway.retrieveIntent
        .mockResolvedValueOnce(intent({ status: 'succeeded' }))
        .mockRejectedValueOnce(new GatewayError('unavailable', undefined, 'timeout'));
      s.orders.findById.mockResolvedValue(orderIn('PAID'));
      expect(await s.finalizer.reconcile()).toBe(1);
      expect(s.events.findUnprocessed).toHaveBeenCalledWith(
        new Date(NOW.getTime() - UNPROCESSED_EVENT_AFTER_MS),
        100,
      );
      expect(s.events.markProcessed).toHaveBeenCalledTimes(1);
      expect(s.events.markProcessed).toHaveBeenCalledWith('evt_lost', NOW, 'confirmed');
      expect(s.events.noteSweepFailed.mock.calls).toEqual([['evt_still_failing', NOW]]);
      expect(s.gateway.retrieveIntent).toHaveBeenCalledTimes(2); // evt_next waits for the next run
    });

    it('an event that fails again (not an outage) goes to the back of the line; the run goes on', async () => {
      const s = await setup();
      s.payments.findStalePending.mockResolvedValue([]);
      s.refunds.retryStale.mockResolvedValue(0);
      s.events.findUnprocessed.mockResolvedValue(['evt_stuck', 'evt_behind']);
      s.events.find.mockImplementation(async (id) => ({
        id,
        type: 'payment_intent.succeeded',
        intentId: 'pi_1',
        processedAt: null,
        receivedAt: new Date(),
      }));
      s.payments.findByIntent.mockResolvedValue(payment());
      s.gateway.retrieveIntent
        .mockRejectedValueOnce(new Error('waits for the pending refunds'))
        .mockResolvedValueOnce(intent({ status: 'succeeded' }));
      s.orders.findById.mockResolvedValue(orderIn('PAID'));
      expect(await s.finalizer.reconcile()).toBe(1);
      expect(s.events.noteSweepFailed).toHaveBeenCalledWith('evt_stuck', NOW);
      expect(s.events.markProcessed).toHaveBeenCalledWith('evt_behind', NOW, 'confirmed');
    });

    it('an event that fails again is a warning; one unprocessed for a day, an error at each failed retry (nothing else raised it)', async () => {
      const s = await setup();
      const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      const warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      s.payments.findStalePending.mockResolvedValue([]);
      s.refunds.retryStale.mockResolvedValue(0);
      const received: Record<string, Date> = {
        evt_fresh: new Date(NOW.getTime() - STUCK_EVENT_MS + 60_000),
        evt_stuck: new Date(NOW.getTime() - STUCK_EVENT_MS - 3_600_000),
      };
      s.events.findUnprocessed.mockResolvedValue(Object.keys(received));
      s.events.find.mockImplementation(async (id) => ({
        id,
        type: 'payment_intent.succeeded',
        intentId: 'pi_1',
        processedAt: null,
        receivedAt: received[id],
      }));
      s.payments.findByIntent.mockResolvedValue(payment());
      s.gateway.retrieveIntent.mockRejectedValue(new Error('waits for the pending refunds'));
      s.orders.findById.mockResolvedValue(orderIn('PAID'));
      await s.finalizer.reconcile();
      const said = (spy: jest.SpyInstance) =>
        spy.mock.calls.map(([m]) => String(m)).filter((m) => m.startsWith('webhook event'));
      expect(said(warnings)).toEqual([
        'webhook event evt_fresh still not processed: waits for the pending refunds',
      ]);
      expect(said(errors)).toEqual([
        expect.stringMatching(
          /^webhook event evt_stuck still not processed: waits for the pending refunds — payment_intent\.succeeded, unprocessed for 25 h/,
        ),
      ]);
      errors.mockRestore();
      warnings.mockRestore();
    });

    it('a dispute event whose dispute the gateway does not know (a key changed to another account) is kept like one about an unknown intent: asked again every 6 hours past its first day, given up after 30 days', async () => {
      const s = await setup();
      const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      const day = 24 * 60 * 60 * 1000;
      const received = { evt_young: 2 * day, evt_old: 31 * day };
      s.events.findUnprocessed.mockResolvedValue(Object.keys(received));
      s.events.find.mockImplementation(async (id) => ({
        id,
        type: 'charge.dispute.updated',
        intentId: 'pi_1',
        processedAt: null,
        receivedAt: new Date(NOW.getTime() - received[id as keyof typeof received]),
      }));
      s.events.objectOf.mockResolvedValue({
        object: 'dispute',
        id: 'dp_1',
        status: 'needs_response',
        amount: 24_900,
        currency: 'inr',
      });
      s.events.markProcessed.mockResolvedValue(true);
      s.gateway.retrieveDispute.mockRejectedValue(
        new GatewayError('rejected', 'resource_missing', 'no such dispute'),
      );
      await s.finalizer.reconcile();
      expect(s.events.noteSweepFailed).toHaveBeenCalledWith(
        'evt_young',
        new Date(NOW.getTime() + 6 * 60 * 60 * 1000),
      );
      expect(s.events.markProcessed.mock.calls).toEqual([['evt_old', NOW, 'unknown-intent']]);
      expect(s.disputes.record).not.toHaveBeenCalled();
      expect(errors).toHaveBeenCalledWith(
        expect.stringContaining('given up: its dispute of intent pi_1 has been unknown'),
      );
      errors.mockRestore();
    });
  });
});
