import fc from 'fast-check';
import { DomainError } from '../common/errors/domain-error';
import { priceLines } from './order-pricing';
import type { ProductSnapshot } from '../catalog/product-snapshot.repository';

const product = (id: string, over: Partial<ProductSnapshot> = {}): ProductSnapshot => ({
  id,
  sku: `SKU-${id}`,
  name: `Product ${id}`,
  priceAmount: 24_900,
  currency: 'INR',
  active: true,
  ...over,
});

/** The DomainError priceLines throws, or a failure if it returned. */
function refusal(run: () => unknown): DomainError {
  try {
    run();
  } catch (err) {
    if (err instanceof DomainError) return err;
    throw err;
  }
  throw new Error('priceLines accepted the lines');
}

/** The limits the API enforces before pricing (CreateOrderDto, MoneyInputDto). */
const MAX_LINES = 100;
const MAX_QUANTITY = 1000;
const MAX_PRICE = 1_000_000_000;

describe('priceLines', () => {
  it('prices each line at the catalog price, in the order asked, snapshotting sku and name', () => {
    const lines = priceLines(
      [
        { productId: 'b', quantity: 3 },
        { productId: 'a', quantity: 1 },
      ],
      [product('a', { priceAmount: 123_450 }), product('b', { priceAmount: 24_900 })],
      'INR',
    );
    expect(lines).toEqual([
      {
        productId: 'b',
        sku: 'SKU-b',
        name: 'Product b',
        quantity: 3,
        unitPriceAmount: 24_900,
        lineTotalAmount: 74_700,
      },
      {
        productId: 'a',
        sku: 'SKU-a',
        name: 'Product a',
        quantity: 1,
        unitPriceAmount: 123_450,
        lineTotalAmount: 123_450,
      },
    ]);
  });

  it('ignores snapshots nobody asked for, and prices a free product at zero', () => {
    const lines = priceLines(
      [{ productId: 'free', quantity: 5 }],
      [product('free', { priceAmount: 0 }), product('other')],
      'INR',
    );
    expect(lines).toEqual([
      expect.objectContaining({ productId: 'free', unitPriceAmount: 0, lineTotalAmount: 0 }),
    ]);
  });

  it('refuses a product named on two lines (400), naming each repeat, before looking at the catalog', () => {
    const err = refusal(() =>
      priceLines(
        [
          { productId: 'a', quantity: 1 },
          { productId: 'ghost', quantity: 1 },
          { productId: 'a', quantity: 2 },
          { productId: 'a', quantity: 1 },
          { productId: 'ghost', quantity: 1 },
        ],
        [product('a')],
        'INR',
      ),
    );
    expect([err.code, err.status]).toEqual(['VALIDATION_FAILED', 400]);
    expect(err.options.errors).toEqual([
      { field: 'items', message: 'duplicate line for product a' },
      { field: 'items', message: 'duplicate line for product a' },
      { field: 'items', message: 'duplicate line for product ghost' },
    ]);
  });

  it('refuses unknown, inactive and foreign-currency products (409), listing each in the order asked', () => {
    const err = refusal(() =>
      priceLines(
        [
          { productId: 'usd', quantity: 1 },
          { productId: 'ok', quantity: 1 },
          { productId: 'gone', quantity: 1 },
          { productId: 'off', quantity: 1 },
        ],
        [product('ok'), product('usd', { currency: 'USD' }), product('off', { active: false })],
        'INR',
      ),
    );
    expect([err.code, err.status]).toEqual(['PRODUCT_UNAVAILABLE', 409]);
    expect(err.options.extensions).toEqual({
      products: [{ productId: 'usd' }, { productId: 'gone' }, { productId: 'off' }],
    });
  });

  it('compares the currency exactly (the shop currency decides, not the product)', () => {
    expect(() =>
      priceLines([{ productId: 'a', quantity: 1 }], [product('a', { currency: 'inr' })], 'INR'),
    ).toThrow(DomainError);
    expect(
      priceLines([{ productId: 'a', quantity: 1 }], [product('a', { currency: 'EUR' })], 'EUR'),
    ).toHaveLength(1);
  });

  it('within the API limits, every line and the order total are exact integers', () => {
    const line = fc.record({
      price: fc.integer({ min: 0, max: MAX_PRICE }),
      quantity: fc.integer({ min: 1, max: MAX_QUANTITY }),
    });
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: MAX_LINES }), (asked) => {
        const ids = asked.map((_, i) => `p${i}`);
        const lines = priceLines(
          asked.map((l, i) => ({ productId: ids[i], quantity: l.quantity })),
          asked.map((l, i) => product(ids[i], { priceAmount: l.price })),
          'INR',
        );
        const total = lines.reduce((sum, l) => sum + l.lineTotalAmount, 0);
        expect(Number.isSafeInteger(total)).toBe(true);
        lines.forEach((l, i) => {
          expect(l.lineTotalAmount).toBe(asked[i].price * asked[i].quantity);
          expect(BigInt(l.lineTotalAmount)).toBe(
            BigInt(asked[i].price) * BigInt(asked[i].quantity),
          );
        });
      }),
      { numRuns: 100 },
    );
  });

  it('the largest order the API accepts is priced exactly', () => {
    const ids = Array.from({ length: MAX_LINES }, (_, i) => `p${i}`);
    const lines = priceLines(
      ids.map((productId) => ({ productId, quantity: MAX_QUANTITY })),
      ids.map((id) => product(id, { priceAmount: MAX_PRICE })),
      'INR',
    );
    expect(lines.reduce((sum, l) => sum + l.lineTotalAmount, 0)).toBe(
      MAX_LINES * MAX_QUANTITY * MAX_PRICE,
    ); // 10^14
  });

  it('refuses a line total past 2^53 (400) rather than rounding it', () => {
    // a price the API would refuse, but one the products table can hold
    const price = Math.floor(Number.MAX_SAFE_INTEGER / 3) + 1;
    const err = refusal(() =>
      priceLines([{ productId: 'a', quantity: 3 }], [product('a', { priceAmount: price })], 'INR'),
    );
    expect([err.code, err.status]).toEqual(['VALIDATION_FAILED', 400]);
    expect(err.options.errors).toEqual([
      { field: 'items', message: expect.stringContaining(String(Number.MAX_SAFE_INTEGER)) },
    ]);
  });

  it('refuses an order total past 2^53 even when each line is exact', () => {
    const half = Math.ceil(Number.MAX_SAFE_INTEGER / 2) + 1;
    const err = refusal(() =>
      priceLines(
        [
          { productId: 'a', quantity: 1 },
          { productId: 'b', quantity: 1 },
        ],
        [product('a', { priceAmount: half }), product('b', { priceAmount: half })],
        'INR',
      ),
    );
    expect(err.code).toBe('VALIDATION_FAILED');
    // right at the limit is still fine
    const exact = priceLines(
      [
        { productId: 'a', quantity: 1 },
        { productId: 'b', quantity: 1 },
      ],
      [
        product('a', { priceAmount: Number.MAX_SAFE_INTEGER - 1 }),
        product('b', { priceAmount: 1 }),
      ],
      'INR',
    );
    expect(exact.reduce((sum, l) => sum + l.lineTotalAmount, 0)).toBe(Number.MAX_SAFE_INTEGER);
  });
});
