import { DomainError } from '../common/errors/domain-error';
import { createHash } from 'node:crypto';
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

  it('tells no body, a JSON null and an empty object apart', () => {
    const [none, nul, empty] = [fingerprint(undefined), fingerprint(null), fingerprint({})];
    expect(new Set([none, nul, empty]).size).toBe(3);
  });

  it("fingerprints a body-less request as it always did (JSON null's text), so builds side by side agree", () => {
    expect(fingerprint(undefined)).toBe(createHash('sha256').update('null').digest('hex'));
  });
});
