import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A product's main image was stored as an absolute URL built from the STORAGE_BASE_URL of the
 * day it became ready: putting a CDN in front later left every main image on the old host (and
 * listed twice in the detail, once under each base). It is now the image's storage key, its URL
 * built when read; this rewrites the uploaded images' URLs to their keys. Absolute URLs that are
 * no upload of ours (the seed's) stay as they are.
 */
export class MainImageKey1763800025000 implements MigrationInterface {
  name = 'MainImageKey1763800025000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `UPDATE products p SET image_url = i.storage_key
         FROM product_images i
        WHERE i.product_id = p.id AND i.status = 'ready'
          AND right(p.image_url, length(i.storage_key) + 1) = '/' || i.storage_key`,
    );
  }

  async down(): Promise<void> {
    // the base URL the old rows were built from is not known here: keys stay keys (the old code
    // would show them as relative URLs until the images are re-confirmed)
  }
}
