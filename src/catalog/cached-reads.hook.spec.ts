import type { FastifyRequest } from 'fastify';
import {
  TRACKER_MEMO_KEY_CHARS,
  answerableFromCache,
  clientOf,
  onlyKnownQuery,
} from './cached-reads.hook';

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
