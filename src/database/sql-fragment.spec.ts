import { SqlFragment, sql } from './sql-fragment';
import { inlineParams } from './sql-literal';

describe('sql fragments', () => {
  it('numbers each value as the next placeholder', () => {
    const at = new Date('2026-11-26T00:00:00Z');
    const f = sql`INSERT INTO t (a, b, c) VALUES (${'x'}::text, ${2}::int, ${at}::timestamptz)`;
    expect(f.text).toBe('INSERT INTO t (a, b, c) VALUES ($1::text, $2::int, $3::timestamptz)');
    expect(f.params).toEqual(['x', 2, at]);
  });

  it('renumbers a spliced fragment after the placeholders before it, whatever its own count', () => {
    const inner = sql`INSERT INTO e (id, topic) VALUES (${'e1'}::uuid, ${'t'}::text)`;
    const outer = sql`WITH e AS (${inner}) INSERT INTO o (id, n) VALUES (${'o1'}::uuid, ${7}::int)`;
    expect(outer.text).toBe(
      'WITH e AS (INSERT INTO e (id, topic) VALUES ($1::uuid, $2::text)) INSERT INTO o (id, n) VALUES ($3::uuid, $4::int)',
    );
    expect(outer.params).toEqual(['e1', 't', 'o1', 7]);

    const before = sql`SELECT ${1}::int, ${2}::int, (${inner}), ${3}::int`;
    expect(before.text).toBe(
      'SELECT $1::int, $2::int, (INSERT INTO e (id, topic) VALUES ($3::uuid, $4::text)), $5::int',
    );
    expect(inlineParams(before.text, [...before.params])).toBe(
      "SELECT (1)::int, (2)::int, (INSERT INTO e (id, topic) VALUES ('e1'::uuid, 't'::text)), (3)::int",
    );
  });

  it('splices an empty fragment as nothing, and fragments within fragments', () => {
    const none = sql``;
    expect(none).toEqual(new SqlFragment('', []));
    const nested = sql`A ${sql`B ${sql`C ${'c'}`} ${'b'}`} ${'a'} ${none}`;
    expect(nested.text).toBe('A B C $1 $2 $3 ');
    expect(nested.params).toEqual(['c', 'b', 'a']);
  });
});
