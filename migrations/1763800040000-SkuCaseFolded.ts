import { MigrationInterface, QueryRunner } from 'typeorm';
import { rekeySkus } from '../src/database/sku-key-migration';

/** The key before: the database's own case mapping, which follows its locale. */
const OLD_KEY = 'upper(normalize(sku, NFKC))';
/**
 * The key SKUs are told apart by: Unicode's case mapping (ICU's, whatever the database's
 * locale), lower then upper, so every case of a letter meets in one (ẞ and ß → SS). The
 * expression ProductRepository's skuKey asks with, too.
 */
const SKU_KEY = (column: string) => `upper(lower(normalize(${column}, NFKC) COLLATE "und-x-icu"))`;

/**
 * products_sku_key was on upper(normalize(sku, NFKC)): `upper()` follows the database's locale —
 * on one made with the C locale (`initdb` without LANG, or chosen for speed) it changes ASCII
 * letters only (CAFÉ-1 and café-1 were two products), and anywhere it maps ß to itself (GROẞ-1
 * and groß-1 were two). The key is now ICU's mapping, the same on every server. PostgreSQL
 * without ICU (a build without --with-icu) stops here, named. Products that collide under the
 * new key stop the migration, named, for a person to rename one of each (a SKU is on orders
 * already: this is not guessed here).
 */
export class SkuCaseFolded1763800040000 implements MigrationInterface {
  name = 'SkuCaseFolded1763800040000';

  async up(q: QueryRunner): Promise<void> {
    const icu = (await q.query(
      `SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'`,
    )) as unknown[];
    if (icu.length === 0) {
      throw new Error(
        'This PostgreSQL has no ICU collation ("und-x-icu"): SKUs are told apart by Unicode case mapping; use a build with ICU (--with-icu, as the official packages and images are).',
      );
    }
    await rekeySkus(q, SKU_KEY('sku'));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX products_sku_key`);
    await q.query(`CREATE UNIQUE INDEX products_sku_key ON products (${OLD_KEY})`);
  }
}
