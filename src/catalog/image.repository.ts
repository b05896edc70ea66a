import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

/** SQL for product images (pending until the storage reports the upload). */
@Injectable()
export class ImageRepository {
  constructor(private readonly tx: TransactionHost) {}

  async insertPending(i: { id: string; productId: string; key: string; contentType: string; sizeBytes: number; at: Date }): Promise<void> {
    await this.tx.query(
      `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [i.id, i.productId, i.key, i.contentType, i.sizeBytes, i.at],
    );
  }

  /**
   * Marks the image ready (once; a repeated notification changes nothing) and makes it the
   * product's main image if it has none. Returns the product id, or null for an unknown key.
   */
  async markReady(key: string, url: string, at: Date): Promise<string | null> {
    const rows: { productId: string }[] = await this.tx.query(
      `WITH img AS (
         UPDATE product_images SET status = 'ready', ready_at = coalesce(ready_at, $3)
          WHERE storage_key = $1 RETURNING product_id
       ), main AS (
         UPDATE products p SET image_url = $2, updated_at = $3
           FROM img WHERE p.id = img.product_id AND p.image_url IS NULL
       )
       SELECT product_id AS "productId" FROM img`,
      [key, url, at],
    );
    return rows[0]?.productId ?? null;
  }
}
