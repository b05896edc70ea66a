import { MigrationInterface, QueryRunner } from 'typeorm';
import { rekeySkus } from '../src/database/sku-key-migration';

/** The key SKUs are told apart by: letter case and Unicode form do not make another SKU. */
const KEY = 'upper(normalize(sku, NFKC))';

/**
 * `tea-assam-250`, `ＴＥＡ-ASSAM-250` and `TEA-ASSAM-250` were three products: the unique index was
 * on the text as typed, so a SKU was "taken" again in another case or form and shown the same on
 * orders, labels and admin screens. products_sku_key is now on upper(normalize(sku, NFKC)) (the
 * API also refuses blanks at either end and invisible characters: PlainCode). Products that
 * already collide under it stop the migration, named, for a person to rename one of each (a SKU
 * is on orders already: this is not guessed here).
 */
export class SkuCaseInsensitive1763800030000 implements MigrationInterface {
  name = 'SkuCaseInsensitive1763800030000';

  async up(q: QueryRunner): Promise<void> {
    await rekeySkus(q, KEY);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX products_sku_key`);
    await q.query(`CREATE UNIQUE INDEX products_sku_key ON products (sku)`);
  }
}
