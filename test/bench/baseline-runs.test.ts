import { pickAtRandom } from '../../bench/checkout-load';
import { beforeAndAfter } from '../../bench/load-check';

/**
 * A baseline is measured right before and right after the runs compared with it, and the ratios
 * use the mean of the two: the blocks printed the mean's rate beside the first run's latencies
 * (and the catalog beside its errors) only, as though they were the two runs'.
 */
describe('a baseline measured before and after', () => {
  it('reports the mean rate and each run with its own latencies', () => {
    const both = beforeAndAfter({ rps: 24_113, p50: 1, p99: 9 }, { rps: 23_877, p50: 2, p99: 14 });
    expect(both.rps).toBe(23_995);
    expect(both.rates).toBe('24113 before, 23877 after');
    expect(both.latencies).toBe('1 / 9 before, 2 / 14 after');
  });
});

/**
 * The 64-SKU baseline driven from Node gave each of its 64 workers a SKU of its own, while the
 * API's buyers pick one at random (two checkouts may wait on one row): both pick at random now.
 */
describe('the 64-SKU scenario', () => {
  const skus = Array.from({ length: 64 }, (_, i) => `sku-${i}`);

  it('picks each transaction a SKU at random, anew each time', () => {
    const seq = [0.5, 0.01, 0.999, 0.5];
    const pick = pickAtRandom(skus, () => seq.shift() ?? 0);
    expect([pick(), pick(), pick(), pick()]).toEqual(['sku-32', 'sku-0', 'sku-63', 'sku-32']);
  });

  it('reaches every SKU, none much more often than the others', () => {
    const pick = pickAtRandom(skus);
    const counts = new Map<string, number>();
    for (let i = 0; i < 64_000; i++) {
      const sku = pick();
      counts.set(sku, (counts.get(sku) ?? 0) + 1);
    }
    expect(counts.size).toBe(64);
    for (const n of counts.values()) expect(n).toBeGreaterThan(700); // 1,000 expected each
  });
});
