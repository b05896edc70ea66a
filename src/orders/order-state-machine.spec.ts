import fc from 'fast-check';
import {
  CANCELLABLE,
  ORDER_STATUSES,
  ORDER_TRANSITIONS,
  OrderStatus,
  canTransition,
  isTerminal,
  sourcesOf,
} from './order-state-machine';

const status = fc.constantFrom(...ORDER_STATUSES);

/** Applies a sequence of attempted moves, taking only those the table allows. */
function walk(start: OrderStatus, attempts: OrderStatus[]): OrderStatus[] {
  const path = [start];
  let current = start;
  for (const to of attempts) {
    if (canTransition(current, to)) {
      current = to;
      path.push(current);
    }
  }
  return path;
}

describe('order state machine', () => {
  it('follows the documented happy path', () => {
    const happy: OrderStatus[] = [
      'CREATED',
      'INVENTORY_RESERVED',
      'PAYMENT_PENDING',
      'PAID',
      'CONFIRMED',
      'FULFILLED',
    ];
    for (let i = 1; i < happy.length; i++) expect(canTransition(happy[i - 1], happy[i])).toBe(true);
  });

  it('refuses PAID -> CREATED and PAID -> CANCELLED', () => {
    expect(canTransition('PAID', 'CREATED')).toBe(false);
    expect(canTransition('PAID', 'CANCELLED')).toBe(false);
  });

  it('allows CANCELLED only from states before PAID', () => {
    expect(sourcesOf('CANCELLED').sort()).toEqual([...CANCELLABLE].sort());
  });

  it('allows refunds only after PAID', () => {
    expect(sourcesOf('REFUNDED').sort()).toEqual(
      ['CONFIRMED', 'FULFILLED', 'PAID', 'PARTIALLY_REFUNDED'].sort(),
    );
  });

  it('never reaches a state outside the table, from any start, along any attempted path', () => {
    fc.assert(
      fc.property(status, fc.array(status, { maxLength: 30 }), (start, attempts) => {
        const path = walk(start, attempts);
        for (let i = 1; i < path.length; i++) {
          expect(ORDER_TRANSITIONS[path[i - 1]]).toContain(path[i]);
        }
      }),
    );
  });

  it('keeps terminal states terminal', () => {
    fc.assert(
      fc.property(fc.array(status, { maxLength: 30 }), (attempts) => {
        for (const terminal of ORDER_STATUSES.filter(isTerminal)) {
          expect(walk(terminal, attempts)).toEqual([terminal]);
        }
      }),
    );
    expect(ORDER_STATUSES.filter(isTerminal).sort()).toEqual(['CANCELLED', 'REFUNDED']);
  });

  it('never returns to a pre-payment state once PAID', () => {
    const before: OrderStatus[] = ['CREATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING'];
    fc.assert(
      fc.property(fc.array(status, { maxLength: 30 }), (attempts) => {
        const path = walk('PAID', attempts);
        expect(path.some((s) => before.includes(s) || s === 'CANCELLED')).toBe(false);
      }),
    );
  });
});
