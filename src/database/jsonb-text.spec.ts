import { jsonbStorable, textStorable } from './jsonb-text';

describe('jsonbStorable', () => {
  it('returns a value without NUL as it is (the same object); a backslash followed by u0000 is text, kept', () => {
    const value = { a: 'x', b: [1, 'y'], c: null };
    expect(jsonbStorable(value)).toBe(value);
    const literal = { text: 'C:\\u0000 is not a NUL' };
    expect(jsonbStorable(literal)).toEqual(literal);
  });

  it('replaces NUL in strings and property names at any depth, leaving the rest unchanged', () => {
    const value = {
      name: 'Ann\u0000Lee',
      list: ['\u0000', 2, true, null],
      deep: { 'k\u0000': { v: 'a\u0000\u0000b' } },
    };
    expect(jsonbStorable(value)).toEqual({
      name: 'Ann\uFFFDLee',
      list: ['\uFFFD', 2, true, null],
      deep: { 'k\uFFFD': { v: 'a\uFFFD\uFFFDb' } },
    });
    expect(value.name).toBe('Ann\u0000Lee'); // the original is not changed
  });

  it('replaces a lone surrogate (high or low, anywhere) but keeps a pair; an escaped backslash before ud800 is text', () => {
    const value = {
      a: 'x\ud800',
      b: '\udc00y',
      c: '\ud83d\ude00',
      ['\udbff']: ['\ud83d\ude00\ud800'],
    };
    expect(jsonbStorable(value)).toEqual({
      a: 'x\ufffd',
      b: '\ufffdy',
      c: '\ud83d\ude00',
      ['\ufffd']: ['\ud83d\ude00\ufffd'],
    });
    const literal = { text: 'C:\\ud800 is text' };
    expect(jsonbStorable(literal)).toEqual(literal);
    expect(textStorable('id\u0000\udfff')).toBe('id\ufffd\ufffd');
    expect(textStorable('pi_123')).toBe('pi_123');
  });
});
