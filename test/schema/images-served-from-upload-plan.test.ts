import { ImageRepository } from '../../src/catalog/image.repository';
import { insertProduct } from '../support/fixtures';
import { queryPlan } from '../support/query-plan';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/**
 * The reconciliation pass reaches the ready images still served from their upload's key (made
 * ready by an earlier build) through their partial index (migration ImagesServedFromUploadIndex),
 * not by reading every image: once the first passes have moved them, nearly all are on a copy.
 */
describe("the pass's search for images served from their upload key", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('finds them by the partial index, not by reading every image (200,000 on a copy, 20 on their upload key, 2,020 pending)', async () => {
    const product = await insertProduct(db.pool, { stock: 1 });
    const plan = await queryPlan(
      db,
      ImageRepository.SERVED_FROM_UPLOAD_SQL,
      [new Date(0), '00000000-0000-0000-0000-000000000000', 200],
      async (client) => {
        await client.query(
          `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, status, created_at, ready_at)
           SELECT id, $1::uuid,
                  'products/' || $1::text || '/' || id || CASE WHEN g % 10000 = 0 OR g % 100 = 1 THEN '' ELSE '.' || gen_random_uuid() || '.png' END,
                  'image/png', 64, CASE WHEN g % 100 = 1 THEN 'pending' ELSE 'ready' END,
                  now() - g * interval '1 second', now()
             FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, 202000) g) s`,
          [product],
        );
        await client.query('ANALYZE product_images');
      },
    );
    expect(plan).toContain('product_images_served_from_upload_idx');
    expect(plan).not.toMatch(/Seq Scan on product_images/);
  });
});
