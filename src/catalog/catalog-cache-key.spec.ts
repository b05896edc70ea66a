import { catalogCacheKey } from './catalog-cache-key';

describe('catalogCacheKey (one cache entry per listing, however its URL is spelled)', () => {
  it('gives every spelling of one query the same key', () => {
    const key = catalogCacheKey('/v1/products?limit=20&sort=newest');
    for (const url of [
      '/v1/products?sort=newest&limit=20',
      '/v1/products?limit=20&sort=newest&',
      '/v1/products?&&limit=20&&sort=newest&&&',
      '/v1/products?%6cimit=20&sort=%6Eewest',
      '/V1/Products?limit=20&sort=newest',
    ]) {
      expect([url, catalogCacheKey(url)]).toEqual([url, key]);
    }
    const id = 'a3bb189e-8bf9-3888-9912-ace4e6543002';
    expect(catalogCacheKey(`/v1/products/${id.toUpperCase()}`)).toBe(
      catalogCacheKey(`/v1/products/${id}`),
    );
    expect(catalogCacheKey('/v1/categories?')).toBe('/v1/categories');
    expect(catalogCacheKey('/v1/products?q=tea+bag')).toBe(
      catalogCacheKey('/v1/products?q=tea%20bag'),
    );
  });

  it('reads a component it cannot percent-decode as the query parser does: its `+` still a space', () => {
    // the route sees `100% cotton` here, and `100%+cotton` in the second: two listings, two keys
    expect(catalogCacheKey('/v1/products?q=100%+cotton')).toBe(
      catalogCacheKey('/v1/products?q=100%25%20cotton'),
    );
    expect(catalogCacheKey('/v1/products?q=100%+cotton')).not.toBe(
      catalogCacheKey('/v1/products?q=100%25%2Bcotton'),
    );
  });

  it('keeps different queries apart', () => {
    const keys = [
      '/v1/products?q=007',
      '/v1/products?q=7',
      '/v1/products?q=a%26b',
      '/v1/products?q=a&b',
      '/v1/products?limit=20',
      '/v1/products?limit=21',
      '/v1/products?limit=20&limit=20',
      '/v1/products?q=%E0%A4', // not UTF-8: kept as sent
      '/v1/products',
    ].map(catalogCacheKey);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('gives every spelling of a path the router takes as one path one key: percent-encoded, absolute-form', () => {
    const id = '7d3c0a3e-1b2c-4d5e-8f90-a1b2c3d4e5f6';
    const keys = [
      `/v1/products/${id}?limit=5`,
      `/v1/pr%6Fducts/${id}?limit=5`,
      `http://x123.example/v1/products/${id}?limit=5`,
      `https://other.example:8443/v1/products/${id.toUpperCase()}?limit=5`,
      `http://h?x${Math.random()}/v1/products/${id}?limit=5`, // (the router drops all before the first / after http://)
      `http://h#x/v1/products/${id}#limit=5`, // (and reads a query after # as after ?)
    ].map(catalogCacheKey);
    expect(new Set(keys)).toEqual(new Set([`/v1/products/${id}?limit=5`]));
    expect(catalogCacheKey('/v1/products#limit=5&&&')).toBe(
      catalogCacheKey('/v1/products?limit=5'),
    );
    // two routes never share a key (split at the first ? for both, these two were one key)
    expect(catalogCacheKey('http://h?x=/v1/products?q=/v1/categories')).toBe(
      '/v1/products?q=%2Fv1%2Fcategories',
    );
    expect(catalogCacheKey('http://h?x=%2Fv1%2Fproducts%3Fq%3D/v1/categories')).toBe(
      '/v1/categories',
    );
    // a target the router does not strip (another scheme, upper case) is no route: not the listing's key
    expect(catalogCacheKey('HTTPS://h/v1/products')).not.toBe('/v1/products');
    // an encoded slash is not a path separator: another resource
    expect(catalogCacheKey('/v1/products/a%2Fb')).not.toBe(catalogCacheKey('/v1/products/a/b'));
  });
});
