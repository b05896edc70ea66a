import { loggedUrl } from './logged-url';

describe('loggedUrl', () => {
  it("keeps pages and filters, names the rest, and writes a sealed cursor by its start (its page's nonce)", () => {
    const cursor = 'AbCdEfGhIjKlMnOp' + 'x'.repeat(360);
    expect(
      loggedUrl(`/v1/products?limit=5&q=my%20secret%20search&cursor=${cursor}&sort=popular`),
    ).toBe('/v1/products?limit=5&q=…&cursor=AbCdEfGhIjKlMnOp…&sort=popular');
    expect(loggedUrl('/v1/products?cursor=short')).toBe('/v1/products?cursor=short');
    expect(loggedUrl(`/v1/products?status=${'s'.repeat(65)}`)).toBe('/v1/products?status=…');
  });
});
