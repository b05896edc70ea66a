import { DomainError } from '../common/errors/domain-error';
import { canonicalJson, fingerprint, parseIdempotencyKey } from './idempotency-key';

describe('idempotency key parsing', () => {
  it('accepts printable ASCII up to 255 characters', () => {
    expect(parseIdempotencyKey('order-1 2024/01:abc')).toBe('order-1 2024/01:abc');
    expect(parseIdempotencyKey('k'.repeat(255))).toHaveLength(255);
  });

  it('treats an absent header as absent', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['too long', 'k'.repeat(256)],
    ['non-ASCII', 'clé-1'],
    ['control character', 'a\tb'],
  ])('refuses a %s key with IDEMPOTENCY_KEY_INVALID', (_label, key) => {
    expect(() => parseIdempotencyKey(key)).toThrow(DomainError);
    try {
      parseIdempotencyKey(key);
    } catch (e) {
      expect((e as DomainError).code).toBe('IDEMPOTENCY_KEY_INVALID');
    }
  });
});

describe('body fingerprint', () => {
  it('ignores key order at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'z' } })).toBe(
      canonicalJson({ a: { c: 'z', d: [1, { x: 1, y: 2 }] }, b: 1 }),
    );
  });

  it('distinguishes different bodies', () => {
    expect(fingerprint({ items: [{ productId: 'a', quantity: 1 }] })).not.toBe(
      fingerprint({ items: [{ productId: 'a', quantity: 2 }] }),
    );
  });

  it('treats an absent body like an empty one only when both are absent', () => {
    expect(fingerprint(undefined)).toBe(fingerprint(null));
    expect(fingerprint({})).not.toBe(fingerprint(null));
  });
});
