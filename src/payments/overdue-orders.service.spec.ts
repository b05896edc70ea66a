import { OrderRepository } from '../orders/order.repository';
import { ReservationExpiryService } from '../orders/reservation-expiry.service';
import type { JobOf, JobName } from '../queue/queues';
import { mockOf } from '../../test/support/mocks';
import { OverdueOrders } from './overdue-orders.service';
import { GatewayError } from './payment-gateway';
import { PaymentFinalizer } from './payment-finalizer.service';
import { PaymentRepository } from './payment.repository';

/**
 * An OverdueOrders over the paying orders in `live` (each with a payment open to ask about, oldest
 * first: none for the database's pass), whose gateway answers with `settleOverdue`; an order
 * expired leaves `live`. `dueToo`: one more due order, outside `live` (a per-order job's).
 */
function overPayingOrders(
  live: Set<string>,
  settleOverdue: PaymentFinalizer['settleOverdue'],
  { dueToo }: { dueToo?: string } = {},
) {
  const orders = mockOf<OrderRepository>(
    {
      reservationDueIn: async (id: string) => (id === dueToo || live.has(id) ? 0 : null),
      findOverdueReservations: async (
        _limit: number,
        excluding: string[] = [],
        opts: { payment?: 'none-open' | 'to-ask' } = {},
      ) => (opts.payment === 'none-open' ? [] : [...live].filter((id) => !excluding.includes(id))),
    },
    'orders',
  );
  const payments = mockOf<PaymentRepository>(
    { findByOrder: async () => ({ status: 'requires_payment_method' }) },
    'payments',
  );
  const finalizer = mockOf<PaymentFinalizer>({ settleOverdue }, 'finalizer');
  const expiry = mockOf<ReservationExpiryService>(
    { expire: async (id: string) => live.delete(id) || id === dueToo },
    'expiry',
  );
  return { overdue: new OverdueOrders(orders, payments, finalizer, expiry), orders, finalizer };
}

describe('OverdueOrders with the gateway not answering', () => {
  function setup(
    findOverdueReservations: OrderRepository['findOverdueReservations'] = async () => ['paying-4'],
  ) {
    const orders = mockOf<OrderRepository>(
      { reservationDueIn: async () => 0, findOverdueReservations },
      'orders',
    );
    const payments = mockOf<PaymentRepository>(
      // every overdue order here has started paying, but the one without a payment
      {
        findByOrder: async (orderId: string) =>
          orderId === 'no-payment' ? null : { status: 'requires_payment_method' },
      },
      'payments',
    );
    const finalizer = mockOf<PaymentFinalizer>(
      {
        settleOverdue: async () =>
          Promise.reject(new GatewayError('unavailable', undefined, 'timed out')),
      },
      'finalizer',
    );
    const expiry = mockOf<ReservationExpiryService>({ expire: async () => true }, 'expiry');
    const overdue = new OverdueOrders(orders, payments, finalizer, expiry);
    const job = {} as JobOf<JobName.ExpireReservation>;
    return { overdue, orders, finalizer, expiry, job };
  }

  it('asks it once, not once per order: the expiries behind it do not wait out its timeouts in turn', async () => {
    const { overdue, finalizer, expiry, job } = setup();
    expect(await overdue.expireReservation({ orderId: 'paying-1' }, job)).toBe(false);
    expect(await overdue.expireReservation({ orderId: 'paying-2' }, job)).toBe(false);
    expect(await overdue.expireReservation({ orderId: 'paying-3' }, job)).toBe(false);
    expect(finalizer.settleOverdue).toHaveBeenCalledTimes(1);
    // an order without a payment still expires on time
    expect(await overdue.expireReservation({ orderId: 'no-payment' }, job)).toBe(true);
    expect(expiry.expire).toHaveBeenCalledWith('no-payment', { unlessPaymentOpen: true });
    // nor does the sweeper ask it again within the memo
    expect(await overdue.sweep()).toBe(0);
    expect(finalizer.settleOverdue).toHaveBeenCalledTimes(1);
  });

  it("found down during the sweep's gateway pass, ends that pass: the paying orders behind are not read and left one by one (each one more to exclude, every minute)", async () => {
    const paying = Array.from({ length: 50 }, (_, i) => `paying-${i}`);
    const { overdue, orders, finalizer } = setup(async (_limit, excluding = [], opts = {}) =>
      opts.payment === 'none-open' ? [] : paying.filter((id) => !excluding.includes(id)),
    );
    expect(await overdue.sweep()).toBe(0);
    // both lanes asked at once, then stopped
    expect(finalizer.settleOverdue.mock.calls.length).toBeLessThanOrEqual(2);
    expect(orders.reservationDueIn.mock.calls.length).toBeLessThanOrEqual(2);
    expect(orders.findOverdueReservations).toHaveBeenCalledTimes(2); // one batch a pass
  });
});

describe('OverdueOrders sweep past an order whose own call always times out', () => {
  it('the next gateway pass starts behind it: the paying orders after it are asked, and it waits a run', async () => {
    const live = new Set(['stuck', 'paying-1', 'paying-2', 'paying-3']);
    const asked: string[] = [];
    // oldest deadline first: 'stuck' heads every batch it is not excluded from
    const { overdue } = overPayingOrders(live, async (id) => {
      asked.push(id);
      if (id === 'stuck') throw new GatewayError('unavailable', undefined, 'timed out');
      return { kind: 'cancelled', orderId: id };
    });
    const nextRun = async () => {
      overdue['gatewayDownUntil'] = 0; // a minute later: the memo of the gateway being down is over
      asked.length = 0;
      return overdue.sweep();
    };
    await nextRun(); // 'stuck' and 'paying-1' asked at once (two askers); 'stuck' ends the pass
    expect(asked).toEqual(['stuck', 'paying-1']);
    expect(await nextRun()).toBe(2); // behind 'stuck': the others asked, expired
    expect(asked).toEqual(['paying-2', 'paying-3']);
    await nextRun(); // then 'stuck' again, first in line
    expect(asked).toEqual(['stuck']);
    expect([...live]).toEqual(['stuck']);
  });
});

describe('OverdueOrders sweep with a slow gateway', () => {
  it('releases every overdue order without a payment before asking the gateway about any (oldest first within each pass)', async () => {
    const calls: string[] = [];
    const live = new Set(['paying-old', 'unpaid-new', 'paying-new', 'unpaid-newer']);
    const orders = mockOf<OrderRepository>(
      {
        reservationDueIn: async (id: string) => (live.has(id) ? 0 : null),
        findOverdueReservations: async (_limit: number, excluding: string[] = []) =>
          ['paying-old', 'unpaid-new', 'paying-new', 'unpaid-newer'].filter(
            (id) => live.has(id) && !excluding.includes(id),
          ),
      },
      'orders',
    );
    const payments = mockOf<PaymentRepository>(
      {
        findByOrder: async (id: string) =>
          id.startsWith('paying') ? { status: 'requires_payment_method' } : null,
      },
      'payments',
    );
    const finalizer = mockOf<PaymentFinalizer>(
      {
        // seconds per answer at a slow gateway: the intent is cancelled there, the order may expire
        settleOverdue: async (id: string) => {
          calls.push(`ask ${id}`);
          return { kind: 'cancelled', orderId: id };
        },
      },
      'finalizer',
    );
    const expiry = mockOf<ReservationExpiryService>(
      {
        expire: async (id: string) => {
          calls.push(`expire ${id}`);
          live.delete(id);
          return true;
        },
      },
      'expiry',
    );
    const overdue = new OverdueOrders(orders, payments, finalizer, expiry);
    expect(await overdue.sweep()).toBe(4);
    expect(calls.slice(0, 2)).toEqual(['expire unpaid-new', 'expire unpaid-newer']);
    // then the paying ones, asked oldest first (two at once: see below)
    expect(calls.filter((c) => c.startsWith('ask'))).toEqual(['ask paying-old', 'ask paying-new']);
    expect(calls.slice(2).sort()).toEqual(
      ['ask paying-new', 'ask paying-old', 'expire paying-new', 'expire paying-old'].sort(),
    );
  });

  it("asks about a sale's abandoned payments as many at once as the process may (2), never more", async () => {
    const live = new Set(Array.from({ length: 7 }, (_, i) => `paying-${i}`));
    let inFlight = 0;
    let most = 0;
    const answers: (() => void)[] = [];
    const { overdue, finalizer } = overPayingOrders(live, async (id) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise<void>((resolve) => answers.push(resolve));
      inFlight--;
      return { kind: 'cancelled', orderId: id };
    });
    const swept = overdue.sweep();
    // the gateway answers one question at a time, each once two are waiting (one, for the last)
    for (let answered = 0; answered < 7; answered++) {
      while (answers.length < Math.min(2, 7 - answered)) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      answers.shift()!();
    }
    expect(await swept).toBe(7);
    expect(most).toBe(2);
    expect(finalizer.settleOverdue).toHaveBeenCalledTimes(7);
  });
});

describe('OverdueOrders sweep beside a per-order job that is asking', () => {
  it('goes on with the asker left (one lane), not past every order as busy', async () => {
    const live = new Set(Array.from({ length: 50 }, (_, i) => `paying-${i}`));
    let releaseJob!: () => void;
    const jobAsking = new Promise<void>((resolve) => (releaseJob = resolve));
    const { overdue, finalizer } = overPayingOrders(
      live,
      async (id) => {
        // the per-order job's question takes as long as the whole sweep
        if (id === 'job-order') await jobAsking;
        else await new Promise((resolve) => setImmediate(resolve));
        return { kind: 'cancelled', orderId: id };
      },
      { dueToo: 'job-order' },
    );
    const job = overdue.expireReservation(
      { orderId: 'job-order' },
      {} as JobOf<JobName.ExpireReservation>,
    );
    while (!finalizer.settleOverdue.mock.calls.length)
      await new Promise((resolve) => setImmediate(resolve));
    expect(await overdue.sweep()).toBe(50);
    expect(live.size).toBe(0);
    releaseJob();
    expect(await job).toBe(true);
  });
});
