import { fastPathLines } from './checkout-sold-out.guard';

const A = '0b7f7e3c-6a47-4d4c-9e4e-2f0a4b1c9d01';
const B = '5d2c1a0e-3b4f-4a6d-8c7e-9f8a7b6c5d02';

describe('fastPathLines (which bodies the sold-out fast path may judge)', () => {
  it('takes the lines of a plain body, in product id order', () => {
    expect(fastPathLines({ items: [{ productId: B, quantity: 2 }, { productId: A, quantity: 1 }] })).toEqual([
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
    ['a duplicate product', { items: [{ productId: A, quantity: 1 }, { productId: A, quantity: 1 }] }],
    ['more than 20 lines', { items: Array.from({ length: 21 }, () => ({ productId: A, quantity: 1 })) }],
    ['an array body', [{ productId: A, quantity: 1 }]],
    ['no body', undefined],
  ])('leaves %s to the normal path', (_name, body) => {
    expect(fastPathLines(body)).toBeNull();
  });
});
