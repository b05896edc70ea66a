import type { QueryRunner } from 'typeorm';
import { SkuCaseInsensitive1763800030000 } from '../../migrations/1763800030000-SkuCaseInsensitive';
import { SkuCaseFolded1763800040000 } from '../../migrations/1763800040000-SkuCaseFolded';
import { insertProduct } from '../support/fixtures';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * products_sku_key moves from the SKU as typed to upper(normalize(sku, NFKC)). SKUs that already
 * collide under the new key stop the migration, named, and nothing changes; once renamed, it runs.
 */
describe('migration SkuCaseInsensitive', () => {
  let db: TestDatabase;
  const runner = () =>
    ({ query: (sql: string) => db.pool.query(sql).then((r) => r.rows) }) as unknown as QueryRunner;
  const indexOf = async () =>
    (await db.pool.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'products_sku_key'`))
      .rows[0]?.indexdef as string;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('names the products that collide and changes nothing; after a rename the key is case- and form-insensitive', async () => {
    const migration = new SkuCaseInsensitive1763800030000();
    await new SkuCaseFolded1763800040000().down(runner());
    await migration.down(runner()); // the index as it was before
    const a = await insertProduct(db.pool, { stock: 1 });
    const b = await insertProduct(db.pool, { stock: 1 });
    await db.pool.query(`UPDATE products SET sku = 'TEA-ASSAM-250' WHERE id = $1`, [a]);
    await db.pool.query(`UPDATE products SET sku = 'ｔｅａ-assam-250' WHERE id = $1`, [b]);
    await expect(migration.up(runner())).rejects.toThrow(/TEA-ASSAM-250 \/ ｔｅａ-assam-250/);
    expect(await indexOf()).toMatch(/\(sku\)$/);

    await db.pool.query(`UPDATE products SET sku = 'TEA-ASSAM-500' WHERE id = $1`, [b]);
    await migration.up(runner());
    expect(await indexOf()).toMatch(/upper\(normalize\(sku, NFKC\)\)/i);
    await expect(
      db.pool.query(`UPDATE products SET sku = 'tea-assam-250' WHERE id = $1`, [b]),
    ).rejects.toMatchObject({
      code: '23505',
      constraint: 'products_sku_key',
    });
  });

  it("SkuCaseFolded: names the products Unicode's case mapping makes one (ẞ/ß) and changes nothing; after a rename, the key is the same on a C-locale column", async () => {
    const migration = new SkuCaseFolded1763800040000();
    const a = await insertProduct(db.pool, { stock: 1 });
    const b = await insertProduct(db.pool, { stock: 1 });
    await db.pool.query(`UPDATE products SET sku = 'GROẞ-1' WHERE id = $1`, [a]);
    await db.pool.query(`UPDATE products SET sku = 'groß-1' WHERE id = $1`, [b]); // two under the old key
    await expect(migration.up(runner())).rejects.toThrow(/GROẞ-1 \/ groß-1/);
    expect(await indexOf()).toMatch(/upper\(normalize\(sku, NFKC\)\)/i);

    await db.pool.query(`UPDATE products SET sku = 'café-1' WHERE id = $1`, [b]);
    await migration.up(runner());
    expect(await indexOf()).toMatch(/und-x-icu/);
    await expect(
      db.pool.query(`UPDATE products SET sku = 'CAFÉ-1' WHERE id = $1`, [a]),
    ).rejects.toMatchObject({
      code: '23505',
      constraint: 'products_sku_key',
    });
    // the database's locale has no say: the C locale's upper() leaves É alone, this key does not
    const keys = await db.pool.query(
      `SELECT upper(lower(normalize(x COLLATE "C", NFKC) COLLATE "und-x-icu")) AS k FROM unnest(ARRAY['CAFÉ-1', 'café-1']) x`,
    );
    expect(new Set(keys.rows.map((r: { k: string }) => r.k)).size).toBe(1);
  });
});
