import { DomainError } from '../common/errors/domain-error';
import {
  LEGACY_NO_BODY_FINGERPRINT,
  NO_BODY_FINGERPRINT,
  canonicalJson,
  fingerprint,
  parseIdempotencyKey,
  sameBody,
} from './idempotency-key';

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
    // a null body never replays a body-less request (the other way round is the legacy match below)
    expect(sameBody(nul, none)).toBe(false);
  });

  it('matches a body-less request to one stored before it had its own fingerprint (JSON null\'s), not a null body to a body-less one', () => {
    expect(sameBody(fingerprint(undefined), LEGACY_NO_BODY_FINGERPRINT)).toBe(true);
    expect(sameBody(fingerprint(undefined), NO_BODY_FINGERPRINT)).toBe(true);
    expect(sameBody(fingerprint({}), LEGACY_NO_BODY_FINGERPRINT)).toBe(false);
  });
});
