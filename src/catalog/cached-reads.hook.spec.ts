import { onlyKnownQuery } from './cached-reads.hook';

describe('cached reads: which URLs may be answered from the cache', () => {
  const id = '3da1f5e3-96cc-4350-843a-cc3b8e0f6cab';
  it('only URLs whose query names parameters the route accepts', () => {
    expect(onlyKnownQuery('/v1/categories')).toBe(true);
    expect(onlyKnownQuery(`/v1/products/${id}`)).toBe(true);
    expect(onlyKnownQuery('/v1/products?limit=5&sort=newest&q=nuts&cursor=abc&categoryId=x')).toBe(true);
    for (const url of [
      '/v1/categories?cb=1',
      `/v1/products/${id}?cb=1`,
      '/v1/products?limit=5&cb=1',
      '/v1/products?limit=5&',
      '/v1/products?%zz=1',
      '/v1/products?li%6Dit=5&x',
    ]) {
      expect({ url, ok: onlyKnownQuery(url) }).toEqual({ url, ok: false });
    }
  });
});
