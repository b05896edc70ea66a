import { SETTLE_REFUND_BACKOFF, paymentsBackoff } from './refund-settle.job';

describe('paymentsBackoff (payments.settle-refund retries)', () => {
  it('retries a pending refund after 1, 2, 4, 8 s, then every 10 s', () => {
    const delays = [1, 2, 3, 4, 5, 6, 19].map((n) => paymentsBackoff(n, SETTLE_REFUND_BACKOFF));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]);
  });

  it('gives any other custom type a plain second', () => {
    expect(paymentsBackoff(5, 'something-else')).toBe(1_000);
  });
});
