import { MigrationInterface, QueryRunner } from 'typeorm';

/** The full-text vector before and after: the words of name and description as stored, then NFKC. */
const BEFORE = `setweight(to_tsvector('simple', name), 'A') || setweight(to_tsvector('simple', description), 'B')`;
const AFTER = `setweight(to_tsvector('simple', normalize(name, NFKC)), 'A') || setweight(to_tsvector('simple', normalize(description, NFKC)), 'B')`;

/**
 * Search found a word only in the Unicode form it was typed in: "ज़ीरा" entered with U+095B was
 * not found by the same word typed as U+091C U+093C (both common on Indian keyboards), "Café"
 * not by "Cafe" + U+0301, "ＴＥＡ" not by "tea". products.search is now built from the NFKC form of
 * the name and description, and the query is normalized the same way (ProductRepository).
 * PostgreSQL 15 cannot change a generated column's expression: the column (and its GIN index) is
 * dropped and added again, which rewrites the products table once. typeorm_metadata (the view of
 * 1763800010000-TypeormMetadata.ts) names the new expression.
 */
export class SearchNormalized1763800028000 implements MigrationInterface {
  name = 'SearchNormalized1763800028000';

  async up(q: QueryRunner): Promise<void> {
    await rebuild(q, AFTER);
  }

  async down(q: QueryRunner): Promise<void> {
    await rebuild(q, BEFORE);
  }
}

async function rebuild(q: QueryRunner, expression: string): Promise<void> {
  await q.query(`ALTER TABLE products DROP COLUMN search`);
  await q.query(
    `ALTER TABLE products ADD COLUMN search tsvector GENERATED ALWAYS AS (${expression}) STORED`,
  );
  await q.query(`CREATE INDEX products_search_idx ON products USING gin (search)`);
  await q.query(`
    CREATE OR REPLACE VIEW typeorm_metadata ("type", "database", "schema", "table", "name", "value") AS
      VALUES ('GENERATED_COLUMN'::varchar, current_database()::varchar, current_schema()::varchar,
              'products'::varchar, 'search'::varchar, '${expression.replace(/'/g, "''")}'::text)`);
}
