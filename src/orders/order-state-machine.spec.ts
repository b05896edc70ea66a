import fc from 'fast-check';
import {
  CANCELLABLE,
  HOLDS_RESERVATION,
  ORDER_STATUSES,
  ORDER_TRANSITIONS,
  OrderStatus,
  PAID_STATUSES,
  canTransition,
  isTerminal,
  requiresReason,
  sourcesOf,
} from './order-state-machine';

/*
 * Model-based test: random sequences of every event an order can meet are applied both to the
 * real machine (the guard the repository's UPDATE uses: `status = ANY(sourcesOf(to))`, and
 * `canTransition`) and to the model below, an independent table written per event rather than
 * per status. Both must accept and refuse the same events and end in the same states.
 */

type Event =
  | 'reserve' // checkout took the stock
  | 'requestPayment' // an intent was created at the gateway
  | 'pay' // the gateway says paid
  | 'paymentFailed' // the gateway says declined
  | 'customerCancel'
  | 'expire' // the reservation window passed
  | 'confirm'
  | 'fulfil'
  | 'refundPart'
  | 'refundRest'
  | 'reopen'; // nothing may ever go back to CREATED

/** The model: for each event, the states it applies in and where it leads. */
const MODEL: Record<Event, { from: readonly OrderStatus[]; to: OrderStatus }> = {
  reserve: { from: ['CREATED'], to: 'INVENTORY_RESERVED' },
  requestPayment: { from: ['INVENTORY_RESERVED'], to: 'PAYMENT_PENDING' },
  // API.md: "No other transition exists" — PAID only from PAYMENT_PENDING (a success that overtook
  // the pending step is recorded as both steps, by OrderTransitionsService.markPaid)
  pay: { from: ['PAYMENT_PENDING'], to: 'PAID' },
  paymentFailed: { from: ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'], to: 'CANCELLED' },
  customerCancel: { from: ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'], to: 'CANCELLED' },
  expire: { from: ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'], to: 'CANCELLED' },
  confirm: { from: ['PAID'], to: 'CONFIRMED' },
  fulfil: { from: ['CONFIRMED'], to: 'FULFILLED' },
  refundPart: {
    from: ['PAID', 'CONFIRMED', 'FULFILLED', 'PARTIALLY_REFUNDED'],
    to: 'PARTIALLY_REFUNDED',
  },
  refundRest: { from: ['PAID', 'CONFIRMED', 'FULFILLED', 'PARTIALLY_REFUNDED'], to: 'REFUNDED' },
  reopen: { from: [], to: 'CREATED' },
};
const EVENTS = Object.keys(MODEL) as Event[];

/** What the model says about a state, written out rather than derived from the real table. */
const MODEL_TERMINAL: readonly OrderStatus[] = ['CANCELLED', 'REFUNDED'];
const MODEL_HOLDS_STOCK: readonly OrderStatus[] = ['INVENTORY_RESERVED', 'PAYMENT_PENDING'];
const MODEL_PAID: readonly OrderStatus[] = ['PAID', 'CONFIRMED', 'FULFILLED', 'PARTIALLY_REFUNDED'];
const BEFORE_PAYMENT: readonly OrderStatus[] = ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'];

/** A cheap check for the hot loop (thousands of steps): throws with both sides on a mismatch. */
function same<T>(what: string, actual: T, expected: T): void {
  if (actual !== expected) {
    throw new Error(`${what}: the machine says ${String(actual)}, the model ${String(expected)}`);
  }
}

interface Model {
  status: OrderStatus;
  everPaid: boolean;
}

/** The system under test: one order moved only as the real machine allows. */
class RealOrder {
  constructor(public status: OrderStatus) {}

  /** What `OrderRepository.transition` does: the guarded UPDATE, in memory. */
  move(to: OrderStatus): boolean {
    const allowed = sourcesOf(to).includes(this.status);
    // the two ways the code asks the table must agree
    same(`canTransition(${this.status}, ${to})`, canTransition(this.status, to), allowed);
    if (allowed) this.status = to;
    return allowed;
  }
}

class EventCommand implements fc.Command<Model, RealOrder> {
  constructor(readonly event: Event) {}

  check(): boolean {
    return true; // refused events are part of the test
  }

  run(model: Model, real: RealOrder): void {
    const { from, to } = MODEL[this.event];
    const before = model.status;
    const expected = from.includes(before);
    if (expected) {
      model.status = to;
      if (MODEL_PAID.includes(to)) model.everPaid = true;
    }

    const accepted = real.move(to);
    same(`${this.event} in ${before} accepted`, accepted, expected);
    same(`the state after ${this.event} from ${before}`, real.status, model.status);
    // what the rest of the code reads from the machine about the state it is in
    const s = real.status;
    same(`isTerminal(${s})`, isTerminal(s), MODEL_TERMINAL.includes(s));
    same(
      `HOLDS_RESERVATION has ${s}`,
      HOLDS_RESERVATION.includes(s),
      MODEL_HOLDS_STOCK.includes(s),
    );
    same(`PAID_STATUSES has ${s}`, PAID_STATUSES.includes(s), MODEL_PAID.includes(s));
    same(`CANCELLABLE has ${s}`, CANCELLABLE.includes(s), MODEL.customerCancel.from.includes(s));
    // a terminal state refuses everything; once paid, never back before payment nor cancelled
    if (MODEL_TERMINAL.includes(before))
      same(`${this.event} in terminal ${before} accepted`, accepted, false);
    if (model.everPaid)
      same(`${s} reached after payment`, [...BEFORE_PAYMENT, 'CANCELLED'].includes(s), false);
  }

  toString(): string {
    return this.event;
  }
}

const anyStatus = fc.constantFrom(...ORDER_STATUSES);
const anyEvents = fc.commands(
  EVENTS.map((e) => fc.constant(new EventCommand(e))),
  { maxCommands: 40 },
);

describe('order state machine (model-based)', () => {
  it('accepts and refuses every event as the model does, from any state, along any sequence', () => {
    fc.assert(
      fc.property(anyStatus, anyEvents, (start, commands) => {
        fc.modelRun(
          () => ({
            model: { status: start, everPaid: MODEL_PAID.includes(start) },
            real: new RealOrder(start),
          }),
          commands,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('from CREATED, the events reach every state (no dead entry in the table)', () => {
    const reached = new Set<OrderStatus>(['CREATED']);
    const queue: OrderStatus[] = ['CREATED'];
    for (let status = queue.shift(); status; status = queue.shift()) {
      for (const e of EVENTS) {
        const order = new RealOrder(status);
        if (order.move(MODEL[e].to) && !reached.has(order.status)) {
          reached.add(order.status);
          queue.push(order.status);
        }
      }
    }
    expect([...reached].sort()).toEqual([...ORDER_STATUSES].sort());
  });

  it('has no edge the model lacks, and lacks none the model has', () => {
    const modelEdges = EVENTS.flatMap((e) =>
      MODEL[e].from.map((from) => `${from} -> ${MODEL[e].to}`),
    );
    const realEdges = ORDER_STATUSES.flatMap((from) =>
      ORDER_TRANSITIONS[from].map((to) => `${from} -> ${to}`),
    );
    expect([...new Set(realEdges)].sort()).toEqual([...new Set(modelEdges)].sort());
  });

  it('asks for a cancellation reason only when cancelling', () => {
    for (const to of ORDER_STATUSES) expect(requiresReason(to)).toBe(to === 'CANCELLED');
  });
});
