import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Objects of an image that nothing serves, noted on its row until they are removed from the store
 * (`stray_keys`, the latest noted at `stray_noted_at`): a checked copy is noted before it is made,
 * and the upload of an image made ready when its copy is (kept until its URL has expired). A process killed between the copy and
 * the ready mark, or a DELETE that failed, left a full copy of the image in the bucket with no row
 * naming it, for good; the reconciliation pass now removes what is noted an hour on
 * (ImagesService, STRAY_GRACE_MS), oldest first, through a partial index of the rows that have any.
 *
 * The columns are added without a default (no rewrite, a moment's lock); the CHECK is added NOT
 * VALID and validated apart (a scan under a lock that lets writes go on); the index is built
 * CONCURRENTLY, outside a transaction (`transaction = false`): every upload and confirmation
 * writes this table. A second run after a failure does the same (IF NOT EXISTS, the constraint
 * and an INVALID index a failed build left dropped first). A revert drops the notes: what they
 * name stays in the bucket.
 */
export class ImageStrayKeys1763800071000 implements MigrationInterface {
  name = 'ImageStrayKeys1763800071000';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE product_images ADD COLUMN IF NOT EXISTS stray_keys text[]`);
    await q.query(`ALTER TABLE product_images ADD COLUMN IF NOT EXISTS stray_noted_at timestamptz`);
    await q.query(
      `ALTER TABLE product_images DROP CONSTRAINT IF EXISTS product_images_stray_keys_check`,
    );
    await q.query(`
      ALTER TABLE product_images ADD CONSTRAINT product_images_stray_keys_check
        CHECK ((stray_keys IS NULL) = (stray_noted_at IS NULL)
               AND (stray_keys IS NULL OR cardinality(stray_keys) BETWEEN 1 AND 32)) NOT VALID`);
    await q.query(`ALTER TABLE product_images VALIDATE CONSTRAINT product_images_stray_keys_check`);
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS product_images_stray_idx`);
    await q.query(`
      CREATE INDEX CONCURRENTLY product_images_stray_idx
        ON product_images (stray_noted_at, id) WHERE stray_keys IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(`DROP INDEX IF EXISTS product_images_stray_idx`);
    await q.query(
      `ALTER TABLE product_images DROP CONSTRAINT IF EXISTS product_images_stray_keys_check`,
    );
    await q.query(`ALTER TABLE product_images DROP COLUMN IF EXISTS stray_noted_at`);
    await q.query(`ALTER TABLE product_images DROP COLUMN IF EXISTS stray_keys`);
  }
}
