import { MigrationInterface, QueryRunner } from 'typeorm';

/** products.search's expression, as 1763800003000-CatalogReads.ts generates it. */
const SEARCH_EXPRESSION = `setweight(to_tsvector('simple', name), 'A') || setweight(to_tsvector('simple', description), 'B')`;

/**
 * What TypeORM's schema diff (`migration:generate`, test/schema/entity-drift.test.ts) reads to
 * compare a generated column with its entity: `typeorm_metadata`, one row per generated column
 * (here only products.search) with the expression it was generated from. TypeORM's migration
 * runner creates it as an empty table before it runs the migrations, as soon as an entity has a
 * generated column (src/catalog/entities/product.entity.ts); empty, the diff would take the
 * column for a different one. TypeORM keys its rows by database name, and every test database is
 * a copy under another name, so the table is replaced by a view that answers for whichever
 * database it is in. No application table changes. TypeORM writes to it only when it
 * synchronizes or generates a migration that adds or drops a generated column (never here):
 * such a migration must change this view instead.
 */
export class TypeormMetadata1763800010000 implements MigrationInterface {
  name = 'TypeormMetadata1763800010000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS typeorm_metadata`);
    await q.query(`
      CREATE VIEW typeorm_metadata ("type", "database", "schema", "table", "name", "value") AS
        VALUES ('GENERATED_COLUMN'::varchar, current_database()::varchar, current_schema()::varchar,
                'products'::varchar, 'search'::varchar, '${SEARCH_EXPRESSION.replace(/'/g, "''")}'::text)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP VIEW typeorm_metadata`);
  }
}
