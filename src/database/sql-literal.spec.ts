import fc from 'fast-check';
import { escapeLiteral } from 'pg';
import { inlineParams, quoteLiteral } from './sql-literal';

describe('quoteLiteral', () => {
  it("quotes any string byte for byte as pg's escapeLiteral does", () => {
    for (const v of ['', "'", '\\', "it's", 'a\\b', "\\'", "''\\\\", 'plain', '\u0000x', "😀\\'"]) {
      expect(quoteLiteral(v)).toBe(escapeLiteral(v));
    }
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom("'", '\\', 'a', 'é', '😀', '"', ' ') }),
        fc.string({ unit: 'binary' }),
        (edgy, any) => {
          expect(quoteLiteral(edgy)).toBe(escapeLiteral(edgy));
          expect(quoteLiteral(any)).toBe(escapeLiteral(any));
        },
      ),
      { seed: 20261204, numRuns: 2000 },
    );
  });
});

describe('inlineParams', () => {
  it('inlines typed placeholders as escaped literals', () => {
    const at = new Date('2026-11-26T01:02:03.456Z');
    expect(
      inlineParams('SELECT $1::uuid[], $2::int[], $3::timestamptz, $4::uuid, $5, $10', [
        ['0b5a8c1e-1d2f-4c3b-9a8b-7c6d5e4f3a2b'],
        [1, 2],
        at,
        'x',
        null,
        6,
        7,
        8,
        9,
        10,
      ]),
    ).toBe(
      `SELECT '{"0b5a8c1e-1d2f-4c3b-9a8b-7c6d5e4f3a2b"}'::uuid[], '{1,2}'::int[], '2026-11-26T01:02:03.456Z'::timestamptz, 'x'::uuid, NULL, (10)`,
    );
  });

  it('escapes quotes and backslashes in strings and array elements', () => {
    expect(inlineParams('SELECT $1', ["it's \\ here"])).toBe("SELECT  E'it''s \\\\ here'");
    expect(inlineParams('SELECT $1', [['a"b', null, "c'd"]])).toBe(
      `SELECT  E'{"a\\\\"b",NULL,"c''d"}'`,
    );
  });

  it('keeps negative numbers from turning a minus into a comment', () => {
    expect(inlineParams('SELECT 10-$1', [-3])).toBe('SELECT 10-(-3)');
  });

  it('refuses what it cannot inline', () => {
    expect(() => inlineParams('SELECT $1', [{}])).toThrow();
    expect(() => inlineParams('SELECT $1', [[{}]])).toThrow();
    expect(() => inlineParams('SELECT $1', [NaN])).toThrow();
    expect(() => inlineParams('SELECT $2', [1])).toThrow();
  });
});
