import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

/** A product image row as the storage notification needs it. */
export interface StoredImage {
  productId: string;
  contentType: string;
  sizeBytes: number;
  status: 'pending' | 'ready';
}

/** SQL for product images (pending until the storage reports the upload). */
@Injectable()
export class ImageRepository {
  constructor(private readonly tx: TransactionHost) {}

  async insertPending(i: {
    id: string;
    productId: string;
    key: string;
    contentType: string;
    sizeBytes: number;
    at: Date;
  }): Promise<void> {
    await this.tx.query(
      `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [i.id, i.productId, i.key, i.contentType, i.sizeBytes, i.at],
    );
  }

  /** The image waiting for (or done with) an upload to this storage key. */
  async findByKey(key: string): Promise<StoredImage | null> {
    const rows: StoredImage[] = await this.tx.query(
      `SELECT product_id AS "productId", content_type AS "contentType", size_bytes AS "sizeBytes", status
         FROM product_images WHERE storage_key = $1`,
      [key],
    );
    return rows[0] ?? null;
  }

  /**
   * Marks a pending image ready and makes it the product's main image if it has none. Guarded
   * (`WHERE status = 'pending'`): of two concurrent or repeated notifications only one changes
   * anything. Returns the product id, or null when nothing was pending under this key.
   */
  async markReady(key: string, url: string, at: Date): Promise<string | null> {
    const rows: { productId: string }[] = await this.tx.query(
      `WITH img AS (
         UPDATE product_images SET status = 'ready', ready_at = $3
          WHERE storage_key = $1 AND status = 'pending' RETURNING product_id
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
