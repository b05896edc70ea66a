import { randomUUID } from 'node:crypto';
import type { QueryRunner } from 'typeorm';
import { MainImageKey1763800025000 } from '../../migrations/1763800025000-MainImageKey';
import { insertProduct } from '../support/fixtures';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * Main images were stored as absolute URLs from the STORAGE_BASE_URL of their day: the uploaded
 * ones become their storage keys (their URL is built when read); others stay as they are.
 */
describe('migration MainImageKey', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("rewrites an uploaded main image's URL to its key, whatever host it was built on, and leaves other URLs", async () => {
    const uploaded = await insertProduct(db.pool, { stock: 1 });
    const seeded = await insertProduct(db.pool, { stock: 1 });
    const pending = await insertProduct(db.pool, { stock: 1 });
    const image = async (product: string, status: string) => {
      const id = randomUUID();
      const key = `products/${product}/${id}`;
      await db.pool.query(
        `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, status, created_at, ready_at)
         VALUES ($1, $2, $3, 'image/png', 10, $4, now(), CASE WHEN $4 = 'ready' THEN now() END)`,
        [id, product, key, status],
      );
      return key;
    };
    const key = await image(uploaded, 'ready');
    const notReady = await image(pending, 'pending');
    const set = (product: string, url: string) =>
      db.pool.query(`UPDATE products SET image_url = $2 WHERE id = $1`, [product, url]);
    await set(uploaded, `http://old-bucket.internal:9000/shop-images/${key}`);
    await set(seeded, 'https://images.example.org/tea.jpg');
    await set(pending, `http://old-bucket.internal:9000/shop-images/${notReady}`);

    await new MainImageKey1763800025000().up({
      query: (sql: string) => db.pool.query(sql),
    } as unknown as QueryRunner);
    const { rows } = await db.pool.query(
      `SELECT id, image_url FROM products WHERE id = ANY($1::uuid[])`,
      [[uploaded, seeded, pending]],
    );
    expect(Object.fromEntries(rows.map((r) => [r.id, r.image_url]))).toEqual({
      [uploaded]: key,
      [seeded]: 'https://images.example.org/tea.jpg',
      [pending]: `http://old-bucket.internal:9000/shop-images/${notReady}`,
    });
  });
});
