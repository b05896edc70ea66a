import { findShortfalls } from './stock-reservation.service';

describe('findShortfalls', () => {
  const stock = [
    { productId: 'a', onHand: 10, reserved: 7 },
    { productId: 'b', onHand: 5, reserved: 0 },
  ];

  it('accepts lines that fit in on-hand minus reserved', () => {
    expect(findShortfalls([{ productId: 'a', quantity: 3 }], stock)).toEqual([]);
  });

  it('names every product that is short, with what is available', () => {
    expect(
      findShortfalls(
        [
          { productId: 'a', quantity: 4 },
          { productId: 'b', quantity: 5 },
          { productId: 'zz', quantity: 1 },
        ],
        stock,
      ),
    ).toEqual([
      { productId: 'a', requested: 4, available: 3 },
      { productId: 'zz', requested: 1, available: 0 },
    ]);
  });
});
