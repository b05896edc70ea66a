import { LocalRateLimiter } from './cached-reads.limiter';

describe('LocalRateLimiter (cached-read fast path)', () => {
  it('allows `limit` requests per client and window, then blocks until the window resets', () => {
    const limiter = new LocalRateLimiter(3, 60_000);
    const t0 = 1_000_000;
    expect([1, 2, 3].map(() => limiter.take('ip:a', t0)!.blocked)).toEqual([false, false, false]);
    expect(limiter.take('ip:a', t0 + 10)).toEqual({
      blocked: true,
      remaining: 0,
      resetSeconds: 60,
    });
    expect(limiter.take('ip:b', t0 + 10)!.blocked).toBe(false); // per client
    expect(limiter.take('ip:a', t0 + 59_999)!.blocked).toBe(true);
    expect(limiter.take('ip:a', t0 + 60_000)).toEqual({
      blocked: false,
      remaining: 2,
      resetSeconds: 60,
    });
  });

  it('peek reads a window without counting; null for a client not tracked or whose window ended', () => {
    const limiter = new LocalRateLimiter(1, 60_000);
    const t0 = 1_000_000;
    expect(limiter.peek('ip:a', t0)).toBeNull();
    limiter.take('ip:a', t0);
    expect(limiter.peek('ip:a', t0 + 1)).toEqual({
      blocked: false,
      remaining: 0,
      resetSeconds: 60,
    });
    expect(limiter.peek('ip:a', t0 + 2)!.blocked).toBe(false); // not counted by the peeks
    limiter.take('ip:a', t0 + 3);
    expect(limiter.peek('ip:a', t0 + 30_000)).toEqual({
      blocked: true,
      remaining: 0,
      resetSeconds: 30,
    });
    expect(limiter.peek('ip:a', t0 + 60_000)).toBeNull();
  });

  it('is bounded: a full table tracks no new client (null) and never resets a tracked one', () => {
    const limiter = new LocalRateLimiter(2, 60_000, 'untracked', 2);
    const t0 = 5_000;
    limiter.take('ip:a', t0);
    limiter.take('ip:a', t0);
    limiter.take('ip:b', t0);
    expect(limiter.take('ip:c', t0 + 1)).toBeNull();
    expect(limiter.take('ip:a', t0 + 2)!.blocked).toBe(true); // still counted
    expect(limiter.size).toBe(2);
    // once windows have expired, a sweep makes room
    expect(limiter.take('ip:c', t0 + 60_000)!.blocked).toBe(false);
    expect(limiter.size).toBeLessThanOrEqual(2);
  });

  it("'evict' (no counter behind it): a full table makes room for a new client by dropping the one seen least recently — a client sending all along stays counted, however many one-off clients come", () => {
    const limiter = new LocalRateLimiter(3, 60_000, 'evict', 100);
    const t0 = 5_000;
    for (let i = 0; i < 3; i++) limiter.take('ip:busy', t0);
    // 10,000 one-off clients (one IPv6 /48's /64s), the busy one still sending between them
    for (let i = 0; i < 10_000; i++) {
      expect(limiter.take(`ip6:${i}`, t0 + 1)!.blocked).toBe(false); // each one tracked
      if (i % 50 === 0) expect(limiter.take('ip:busy', t0 + 1)!.blocked).toBe(true);
    }
    expect(limiter.size).toBe(100);
    // one that went quiet while they came starts again from nothing
    expect(limiter.take('ip6:0', t0 + 2)).toMatchObject({ blocked: false, remaining: 2 });
  });
});
