import { Pool } from 'pg';
import { inlineParams } from '../../src/database/sql-literal';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/** Inlined literals must read back exactly as the same values sent as parameters. */
describe('inlineParams against PostgreSQL', () => {
  let db: TestDatabase;
  let pool: Pool;
  beforeAll(async () => {
    db = await createTestDatabase();
    pool = db.pool;
  });
  afterAll(async () => {
    await db?.drop();
  });

  const nasty = [
    '',
    ' ',
    'NULL',
    'null',
    "O'Brien",
    'back\\slash',
    '\\\\',
    'quote"d',
    '{braces}',
    'a,b',
    'tab\there',
    'line\nbreak',
    'ünïcødé ✓ 🍫',
    "E'x'",
    '$1',
    ';DROP TABLE orders;--',
    '\\"',
    '"',
  ];

  it('strings and string arrays (with NULLs) survive the round trip', async () => {
    for (const s of nasty) {
      const { rows } = await pool.query(`SELECT ${inlineParams('$1::text', [s])} AS v`);
      expect(rows[0].v).toBe(s);
    }
    const arr = [...nasty, null];
    const { rows } = await pool.query(`SELECT ${inlineParams('$1::text[]', [arr])} AS v`);
    expect(rows[0].v).toEqual(arr);
  });

  it('a negative number after a minus stays arithmetic', async () => {
    const { rows } = await pool.query(
      `${inlineParams('SELECT 10-$1 AS v, $2::text AS w', [-3, 'x'])}`,
    );
    expect(rows[0]).toEqual({ v: 13, w: 'x' });
  });

  it('numbers, timestamps, uuids and empty arrays too', async () => {
    const at = new Date('2026-11-26T01:02:03.456Z');
    const id = '0b5a8c1e-1d2f-4c3b-9a8b-7c6d5e4f3a2b';
    const sql = inlineParams(
      'SELECT $1::bigint AS n, $2::timestamptz AS t, $3::uuid[] AS u, $4::int[] AS e, $5::jsonb AS j',
      [9007199254740991, at, [id], [], JSON.stringify({ a: "it's", b: ['x\\y'] })],
    );
    const { rows } = await pool.query(sql);
    expect(rows[0]).toEqual({
      n: '9007199254740991',
      t: at,
      u: [id],
      e: [],
      j: { a: "it's", b: ['x\\y'] },
    });
  });
});
