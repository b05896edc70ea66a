import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  TRACKER_MEMO_KEY_CHARS,
  answerableFromCache,
  cachedReadsHook,
  clientOf,
  onlyKnownQuery,
} from './cached-reads.hook';
import type { CatalogCache } from './catalog-cache';

describe('cached reads: which URLs may be answered from the cache', () => {
  const id = '3da1f5e3-96cc-4350-843a-cc3b8e0f6cab';
  it('only URLs whose query names parameters the route accepts', () => {
    expect(onlyKnownQuery('/v1/categories')).toBe(true);
    expect(onlyKnownQuery(`/v1/products/${id}`)).toBe(true);
    expect(onlyKnownQuery('/v1/products?limit=5&sort=newest&q=nuts&cursor=abc&categoryId=x')).toBe(
      true,
    );
    // empty segments: the query-string parser drops them, the route answers, the key has none
    expect(onlyKnownQuery('/v1/products?limit=5&')).toBe(true);
    // the path as the router matches it: `/V1/CATEGORIES` is its 404, whatever the cache holds
    for (const url of ['/V1/CATEGORIES', '/v1/Products?limit=5'])
      expect(answerableFromCache(url)).toBe(false);
    expect(answerableFromCache(`/v1/products/${id.toUpperCase()}`)).toBe(true);
    for (const url of [
      '/v1/categories?cb=1',
      `/v1/products/${id}?cb=1`,
      '/v1/products?limit=5&cb=1',
      '/v1/products?%zz=1',
      '/v1/products?li%6Dit=5&x',
    ]) {
      expect({ url, ok: onlyKnownQuery(url) }).toEqual({ url, ok: false });
    }
  });
});

describe('cached reads: the per-client tracker memo', () => {
  const request = (forwarded: string, ip: string) =>
    ({
      headers: { 'x-forwarded-for': forwarded },
      socket: { remoteAddress: '10.0.0.1' },
      ip,
    }) as unknown as FastifyRequest;

  it('remembers a short X-Forwarded-For chain, never a long one (anonymous clients write it)', () => {
    const trackers = new Map<string, string>();
    expect(clientOf(request('203.0.113.7, 10.0.0.2', '203.0.113.7'), trackers)).toBe(
      'ip:203.0.113.7',
    );
    expect(trackers.size).toBe(1);
    // 16 KiB headers, each different: answered all the same, none kept
    for (let i = 0; i < 50; i++) {
      const long = `${'198.51.100.1, '.repeat(1200)}${i}`;
      expect(clientOf(request(long, '198.51.100.9'), trackers)).toBe('ip:198.51.100.9');
    }
    expect(trackers.size).toBe(1);
    expect([...trackers.keys()].every((k) => k.length <= TRACKER_MEMO_KEY_CHARS)).toBe(true);
  });
});

describe('cached reads: requests no route matches', () => {
  /** A reply that notes the status it was sent with (every other call is chained through). */
  const replyNotingStatus = () => {
    const sent: { status?: number } = {};
    const reply: FastifyReply = new Proxy(sent, {
      get: (target, prop) =>
        prop === 'code'
          ? (code: number) => ((target.status = code), reply)
          : prop === 'status'
            ? target.status
            : () => reply,
    }) as unknown as FastifyReply;
    return { reply, sent };
  };

  it("are refused past the `default` policy's limit per client, however many one-off clients fill the counter's table", () => {
    let now = 1_000_000;
    const hook = cachedReadsHook({} as CatalogCache, {
      rateLimitEnabled: true,
      browserHeaders: () => undefined,
      now: () => now,
    });
    /** One request to a URL no route has: 'passed' on to the not-found handler, or the status. */
    const send = (ip: string) => {
      const { reply, sent } = replyNotingStatus();
      let passed = false;
      const request = { routeOptions: { url: undefined }, headers: {}, ip, id: 'r', url: '/nope' };
      hook(request as unknown as FastifyRequest, reply, () => (passed = true));
      return passed ? 'passed' : sent.status;
    };
    // 10,000 /64s of one /48, one 404 each: the table is full
    for (let i = 0; i < 10_000; i++) send(`2001:db8:1:${i.toString(16)}::1`);
    now += 1_500; // (past the once-a-second sweep: none of their windows has ended)
    const answers = Array.from({ length: 400 }, () => send('203.0.113.9'));
    expect(answers.filter((a) => a === 429)).toHaveLength(100);
  });
});
