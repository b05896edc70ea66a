import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Ready images still served from their upload's key (`products/<product>/<image>`: made ready by a
 * build before ready images were served from a checked copy) are moved to one by the
 * reconciliation pass (ImageRepository.SERVED_FROM_UPLOAD_SQL), oldest first, a page at a time.
 * Without an index it read every image to find them — nearly all on a copy of their own once the
 * first passes have run. A partial index of them alone shrinks as they are moved.
 *
 * Built CONCURRENTLY, so outside the migration's transaction (`transaction = false`): the table is
 * written by every upload and confirmation, and a plain CREATE INDEX would hold those writes for
 * the whole build. A build that failed leaves an INVALID index behind, dropped before the next try.
 */
export class ImagesServedFromUploadIndex1763800069000 implements MigrationInterface {
  name = 'ImagesServedFromUploadIndex1763800069000';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS product_images_served_from_upload_idx`);
    await q.query(`
      CREATE INDEX CONCURRENTLY product_images_served_from_upload_idx
        ON product_images (created_at, id)
        WHERE status = 'ready' AND storage_key = 'products/' || product_id::text || '/' || id::text`);
  }

  async down(q: QueryRunner): Promise<void> {
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(`DROP INDEX IF EXISTS product_images_served_from_upload_idx`);
  }
}
