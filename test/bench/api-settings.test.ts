import { isIPv4 } from 'node:net';
import { CLIENT_ADDRESSES, apiSettings, clientAddress } from '../../bench/support';

/**
 * A generated block says how the benchmarked API ran where a deployment runs it differently
 * (docker/compose.yml: LOG_LEVEL=info, RATE_LIMIT_ENABLED=true): the figures were read as a
 * deployment's while the API logged less and skipped every rate limit, unsaid.
 */
describe("a benchmark block states the API's settings", () => {
  const db = { DATABASE_URL: 'postgres://shop@127.0.0.1:5432/shop_bench' };

  it('names LOG_LEVEL=warn and what it skips, next to rate limiting on and how', () => {
    const said = apiSettings(db);
    expect(said).toContain('NODE_ENV=production');
    expect(said).toContain(
      "LOG_LEVEL=warn, not a deployment's `info` (docker/compose.yml): this run skips the " +
        'per-request log lines',
    );
    expect(said).toContain('rate limiting on');
    expect(said).toContain(`${CLIENT_ADDRESSES.toLocaleString('en')} clients`);
    expect(said).toContain('TRUST_PROXY=loopback');
    expect(said).toContain('a 429 fails the run');
  });

  it('says rate limiting was off only with the reason, and refuses to without one', () => {
    const off = { ...db, RATE_LIMIT_ENABLED: 'false' };
    expect(() => apiSettings(off)).toThrow('rate limiting off: say why in the block');
    expect(apiSettings(off, 'the per-account limit')).toContain(
      '**rate limiting off** (RATE_LIMIT_ENABLED=false, where a deployment keeps it on): the ' +
        'per-account limit',
    );
  });

  it("names the API's argon2 computations at once: its peak memory while registering depends on them", () => {
    // README's PASSWORD_HASH_CONCURRENCY row points at `PASSWORD_HASH_CONCURRENCY=2 npm run
    // bench:flash-sale` for the peak with two at once: the block must say which it measured
    const saved = process.env.PASSWORD_HASH_CONCURRENCY;
    try {
      delete process.env.PASSWORD_HASH_CONCURRENCY;
      expect(apiSettings(db)).toMatch(/; PASSWORD_HASH_CONCURRENCY=1$/);
      process.env.PASSWORD_HASH_CONCURRENCY = '2';
      expect(apiSettings(db)).toMatch(/; PASSWORD_HASH_CONCURRENCY=2$/);
    } finally {
      if (saved === undefined) delete process.env.PASSWORD_HASH_CONCURRENCY;
      else process.env.PASSWORD_HASH_CONCURRENCY = saved;
    }
  });

  it('spreads the load over CLIENT_ADDRESSES distinct client addresses, in turn', () => {
    const addresses = Array.from({ length: CLIENT_ADDRESSES }, (_, i) => clientAddress(i));
    expect(addresses.every((a) => isIPv4(a))).toBe(true);
    expect(new Set(addresses).size).toBe(CLIENT_ADDRESSES);
    expect(clientAddress(CLIENT_ADDRESSES + 5)).toBe(clientAddress(5));
    // the cached reads' per-process table holds 10,000 clients: all of them are counted
    expect(CLIENT_ADDRESSES).toBeLessThanOrEqual(10_000);
  });
});
