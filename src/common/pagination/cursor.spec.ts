import { DomainError } from '../errors/domain-error';
import type { AppConfig } from '../../config/config';
import { CursorCodec, isTimestamp } from './cursor';

const id = '3da1f5e3-96cc-4350-843a-cc3b8e0f6cab';
const raw = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const codecUnder = (secret: string) => new CursorCodec({ jwt: { secret } } as AppConfig);
const codec = codecUnder('a-test-secret-of-some-length');
const LIST = 'a list';
const decodeCursor = (cursor: string | undefined, shape: Parameters<typeof codec.decode>[1]) =>
  codec.decode(cursor, shape, LIST);
const encodeCursor = (key: Parameters<typeof codec.encode>[0]) => codec.encode(key, LIST);

describe('keyset cursors', () => {
  it('accepts timestamps as toISOString and PostgreSQL text write them, and only real instants', () => {
    for (const ok of [
      '2026-11-30T07:28:32.123Z',
      '2026-11-30 07:28:32.123456+00',
      '2024-02-29 00:00:00+05:30',
      '2026-01-01T00:00:00-0800',
      '9999-12-31T23:59:59Z',
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59+15:59',
    ]) {
      expect({ ok, valid: isTimestamp(ok) }).toEqual({ ok, valid: true });
    }
    for (const bad of [
      'yesterday',
      '2026-02-30 10:00:00+00',
      '2026-13-01T00:00:00Z',
      '2026-11-30T24:00:00Z',
      '2026-11-30T07:28:32',
      '2026-11-30T07:28:32.1234567Z',
      '2026-11-30 07:28:32+16',
      '0000-01-01T00:00:00Z',
      '2026-11-30T07:28:32+05',
      '9999-12-31T23:59:59-15:59',
      '0001-01-01T00:00:00+15:59',
    ]) {
      expect({ bad, valid: isTimestamp(bad) }).toEqual({ bad, valid: false });
    }
  });

  it('an instant it accepts comes back through toISOString as one it accepts (a cursor re-issued stays valid)', () => {
    for (const written of [
      '9999-12-31T23:59:59Z',
      '9999-12-31T08:00:00-15:59',
      '0001-01-01T00:00:00Z',
      '0001-01-01T20:00:00+15:59',
    ]) {
      expect(isTimestamp(written)).toBe(true);
      const reissued = new Date(written).toISOString();
      expect({ written, reissued, valid: isTimestamp(reissued) }).toEqual({
        written,
        reissued,
        valid: true,
      });
    }
  });

  it('decodes what it encoded, and refuses any field of the wrong kind with 400 VALIDATION_FAILED — sealed by us or not', () => {
    const shape = { k: 'integer', i: 'uuid', t: 'timestamp', s: 'number' } as const;
    const good = { k: 24900, i: id, t: '2026-11-30 07:28:32.123456+00', s: 0.25 };
    expect(decodeCursor(encodeCursor(good), shape)).toEqual(good);
    for (const bad of [
      { ...good, k: 1.5 },
      { ...good, k: 2 ** 64 },
      { ...good, i: 'not-a-uuid' },
      { ...good, t: 'now' },
      { ...good, s: 'x' },
    ]) {
      expect(() => decodeCursor(encodeCursor(bad), shape)).toThrow(DomainError);
      expect(() => decodeCursor(raw(bad), shape)).toThrow(DomainError);
    }
    expect(() => decodeCursor(encodeCursor({ n: 'a\u0000' }), { n: 'string' })).toThrow(
      DomainError,
    );
    expect(decodeCursor(undefined, shape)).toBeNull();
  });

  it('is sealed: its values cannot be read, and a cursor it did not seal (plain JSON, one byte altered, another secret, trailing junk) is a 400', () => {
    const shape = { k: 'int4', i: 'uuid' } as const;
    const key = { k: 137, i: id }; // units sold, in the popular listing's cursor
    const cursor = encodeCursor(key);
    expect(Buffer.from(cursor, 'base64url').toString('latin1')).not.toMatch(/137|"k"|3da1f5e3/);
    expect(encodeCursor(key)).toBe(cursor); // one page's next cursor is one string (cached pages)
    // nor their size: units sold of 0, 42, 137 and 4210 seal to cursors of one length
    expect(new Set([0, 42, 137, 4210].map((k) => encodeCursor({ k, i: id }).length)).size).toBe(1);
    const flipped = Buffer.from(cursor, 'base64url');
    flipped[flipped.length - 20] ^= 1;
    for (const forged of [
      raw(key),
      flipped.toString('base64url'),
      codecUnder('another-secret-entirely').encode(key, LIST),
      `${cursor}A`,
      cursor.slice(0, 20),
      '',
    ]) {
      expect(() => decodeCursor(forged, shape)).toThrow(DomainError);
    }
  });

  it('is bound to the list it was made for: sent to another, it is a 400 naming that list', () => {
    const shape = { k: 'int4', i: 'uuid' } as const;
    const cursor = codec.encode({ k: 1, i: id }, 'reviews of A');
    expect(codec.decode(cursor, shape, 'reviews of A', "product's reviews")).toEqual({
      k: 1,
      i: id,
    });
    let refused: unknown;
    try {
      codec.decode(cursor, shape, 'reviews of B', "product's reviews");
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DomainError);
    expect((refused as DomainError).message).toBe(
      "The cursor belongs to another product's reviews.",
    );
  });

  it("through a key rotation's roll: seals under the signing key, opens under it or the verify-only secret, and refuses the removed key's", () => {
    const OLD = 'the-old-secret-0123456789-abcdefghij';
    const NEW = 'the-new-secret-0123456789-abcdefghij';
    const under = (secret: string, verifyOnly?: string) =>
      new CursorCodec({
        jwt: { secret, verifyOnly: verifyOnly && { algorithm: 'HS256', secret: verifyOnly } },
      } as AppConfig);
    const shape = { k: 'int4', i: 'uuid' } as const;
    const key = { k: 7, i: id };
    const before = under(OLD);
    const step1 = under(OLD, NEW);
    const step2 = under(NEW, OLD);
    const after = under(NEW);
    // sealed under the signing key: step 1 seals as before did, step 2 as after will
    expect(step1.encode(key, LIST)).toBe(before.encode(key, LIST));
    expect(step2.encode(key, LIST)).toBe(after.encode(key, LIST));
    const byOld = before.encode(key, LIST);
    const byNew = after.encode(key, LIST);
    const opens = (codec: CursorCodec, cursor: string) => {
      try {
        return codec.decode(cursor, shape, LIST) !== null;
      } catch {
        return false;
      }
    };
    expect([step1, step2].map((c) => [opens(c, byOld), opens(c, byNew)])).toEqual([
      [true, true],
      [true, true],
    ]);
    expect(step2.decode(byOld, shape, LIST)).toEqual(key);
    // the previous key removed: its cursors are refused (400, as any not sealed here)
    expect([opens(after, byOld), opens(before, byNew)]).toEqual([false, false]);
    expect(() => after.decode(byOld, shape, LIST)).toThrow(DomainError);
  });
});
