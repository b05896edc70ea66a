import type { Counter } from 'prom-client';
import { mockOf } from '../../test/support/mocks';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { SoldOutMarks } from '../inventory/sold-out';
import { MetricsService } from '../metrics/metrics.service';
import { CheckoutSoldOutGuard, fastPathLines } from './checkout-sold-out.guard';

const A = '0b7f7e3c-6a47-4d4c-9e4e-2f0a4b1c9d01';
const B = '5d2c1a0e-3b4f-4a6d-8c7e-9f8a7b6c5d02';

describe('fastPathLines (which bodies the sold-out fast path may judge)', () => {
  it('takes the lines of a plain body, in product id order', () => {
    expect(
      fastPathLines({
        items: [
          { productId: B, quantity: 2 },
          { productId: A, quantity: 1 },
        ],
      }),
    ).toEqual([
      { productId: A, quantity: 1 },
      { productId: B, quantity: 2 },
    ]);
  });

  it.each([
    ['no items (a cart checkout)', {}],
    ['an empty list', { items: [] }],
    ['another property', { items: [{ productId: A, quantity: 1 }], note: 'x' }],
    ['a line with another property', { items: [{ productId: A, quantity: 1, price: 1 }] }],
    ['a quantity as a string', { items: [{ productId: A, quantity: '1' }] }],
    ['a fractional quantity', { items: [{ productId: A, quantity: 1.5 }] }],
    ['a quantity of 0', { items: [{ productId: A, quantity: 0 }] }],
    ['a quantity over 1000', { items: [{ productId: A, quantity: 1001 }] }],
    ['an upper-case id', { items: [{ productId: A.toUpperCase(), quantity: 1 }] }],
    ['not a UUID', { items: [{ productId: 'x', quantity: 1 }] }],
    [
      'a duplicate product',
      {
        items: [
          { productId: A, quantity: 1 },
          { productId: A, quantity: 1 },
        ],
      },
    ],
    [
      'more than 20 lines',
      { items: Array.from({ length: 21 }, () => ({ productId: A, quantity: 1 })) },
    ],
    ['an array body', [{ productId: A, quantity: 1 }]],
    ['no body', undefined],
  ])('leaves %s to the normal path', (_name, body) => {
    expect(fastPathLines(body)).toBeNull();
  });
});

describe('CheckoutSoldOutGuard#refusal (refuses only a key that holds nothing)', () => {
  const body = { items: [{ productId: A, quantity: 2 }] };
  const guardWith = (soldOut: boolean, keyInUse: boolean) => {
    const marks = mockOf<SoldOutMarks>({ knownSoldOut: async () => soldOut });
    const idempotency = mockOf<IdempotencyService>({ keyInUse: async () => keyInUse });
    const metrics = mockOf<MetricsService>({ counter: () => mockOf<Counter<string>>({}) });
    return { guard: new CheckoutSoldOutGuard(marks, idempotency, metrics), marks, idempotency };
  };

  it('refuses a sold-out checkout whose key holds nothing, naming each line', async () => {
    const { guard, idempotency } = guardWith(true, false);
    const refusal = await guard.refusal('u1', 'k1', body);
    expect(refusal?.code).toBe('INSUFFICIENT_STOCK');
    expect(idempotency.keyInUse).toHaveBeenCalledWith('user:u1', 'k1');
  });

  it('leaves a key with a record (a 201 to replay, a key of another route) to the normal path', async () => {
    const { guard } = guardWith(true, true);
    expect(await guard.refusal('u1', 'k1', body)).toBeNull();
  });

  it('looks at the marks again once the key has been asked about: a release answered meanwhile is no refusal', async () => {
    const { guard, marks } = guardWith(true, false);
    jest
      .mocked(marks.knownSoldOut)
      .mockResolvedValueOnce(true) // before the key's question
      .mockResolvedValueOnce(false); // after it: a restock's clear landed meanwhile
    expect(await guard.refusal('u1', 'k1', body)).toBeNull();
    expect(marks.knownSoldOut).toHaveBeenCalledTimes(2);
  });

  it('does not read the records when the products are not known to be sold out', async () => {
    const { guard, idempotency } = guardWith(false, false);
    expect(await guard.refusal('u1', 'k1', body)).toBeNull();
    expect(idempotency.keyInUse).not.toHaveBeenCalled();
  });
});
