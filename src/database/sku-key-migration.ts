import type { QueryRunner } from 'typeorm';

/**
 * The SKU migrations' step (1763800030000, 1763800040000): products_sku_key rebuilt on `key` (an
 * expression over `sku`) — unless products already collide under it, which stops the migration,
 * named, for a person to rename one of each (a SKU is on orders already: not guessed here).
 */
export async function rekeySkus(q: QueryRunner, key: string): Promise<void> {
  const clashes = (await q.query(
    `SELECT ${key} AS key, array_agg(sku ORDER BY created_at) AS skus
       FROM products GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 20`,
  )) as { key: string; skus: string[] }[];
  if (clashes.length > 0) {
    throw new Error(
      'SKUs that differ only in letter case or Unicode form (rename all but one of each, ' +
        `e.g. UPDATE products SET sku = '…' WHERE sku = '…'): ${clashes.map((c) => c.skus.join(' / ')).join('; ')}`,
    );
  }
  await q.query(`DROP INDEX products_sku_key`);
  await q.query(`CREATE UNIQUE INDEX products_sku_key ON products ((${key}))`);
}
