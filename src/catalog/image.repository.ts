import { Injectable } from '@nestjs/common';
import { IsNull } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import { ProductImageEntity, ProductImageStatus } from './entities/product-image.entity';
import { ProductRepository } from './product.repository';

/** A product image row as the storage notification needs it. */
interface StoredImage {
  id: string;
  productId: string;
  /** The key it is served from: its upload's while pending (and if made ready before 2026-12). */
  key: string;
  contentType: string;
  sizeBytes: number;
  status: ProductImageStatus;
}

/** An image as the reconciliation pass needs it (pending, or ready on its upload's key). */
export interface PendingImage {
  id: string;
  key: string;
  contentType: string;
  sizeBytes: number;
  createdAt: Date;
}

/** An image with objects noted as served to no one (`stray_keys`), for the pass to remove. */
export interface StrayImage {
  id: string;
  productId: string;
  /** The key it is served from (never removed as a stray). */
  key: string;
  /** As noted; one being removed by the pass is marked TAKEN (`~<key>`). */
  strayKeys: string[];
  notedAt: Date;
  createdAt: Date;
}

/**
 * The mark of a noted key the pass is removing (`~<key>`: no key of ours starts with it): taken
 * before its DeleteObject, in place, so that no ready mark can adopt it any more (their guard
 * names the bare key) and a kill before the DELETE leaves it named — the next pass deletes it.
 */
export const TAKEN = '~';

/** Objects an image may have noted at once (the row's CHECK); a note past them is refused. */
export const MAX_STRAY_KEYS = 32;

/** A keyset page's start: after (time, id) of the last row read, or before every row. */
const keysetAfter = (at?: Date, id?: string): [Date, string] => [
  at ?? new Date(0),
  id ?? '00000000-0000-0000-0000-000000000000',
];

/** Advisory lock class of a product's image count ('IM'): one upload started at a time per product. */
const IMAGES_LOCK_CLASS = 0x494d;

/** Product images (pending until the storage reports the upload). */
@Injectable()
export class ImageRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly products: ProductRepository,
  ) {}

  /**
   * Records a pending image unless the product already has `maxPerProduct` images (pending and
   * ready together; false then). Counted under a lock per product: two uploads started at once
   * cannot both take the last place.
   */
  async insertPending(
    i: {
      id: string;
      productId: string;
      key: string;
      contentType: string;
      sizeBytes: number;
      at: Date;
    },
    maxPerProduct: number,
  ): Promise<boolean> {
    return this.tx.run(async () => {
      await this.tx.query(
        `SELECT pg_advisory_xact_lock(${IMAGES_LOCK_CLASS}, hashtext($1::text))`,
        [i.productId],
      );
      const [held] = await this.tx.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM product_images WHERE product_id = $1`,
        [i.productId],
      );
      if ((held?.n ?? 0) >= maxPerProduct) return false;
      await this.tx.withManager((m) =>
        m.getRepository(ProductImageEntity).insert({
          id: i.id,
          productId: i.productId,
          storageKey: i.key,
          contentType: i.contentType,
          sizeBytes: i.sizeBytes,
          createdAt: i.at,
        }),
      );
      return true;
    });
  }

  /**
   * The image an upload key (`products/<product id>/<image id>`) was handed out for, pending or
   * ready — a ready one is served from a key of its own (markReady), or from the upload's own
   * when an earlier build made it ready.
   */
  async findByUpload(productId: string, imageId: string): Promise<StoredImage | null> {
    const image = await this.tx.withManager((m) =>
      m.getRepository(ProductImageEntity).findOneBy({ id: imageId, productId }),
    );
    return image
      ? {
          id: image.id,
          productId: image.productId,
          key: image.storageKey,
          contentType: image.contentType,
          sizeBytes: image.sizeBytes,
          status: image.status,
        }
      : null;
  }

  /**
   * Notes `key` as an object of the image that nothing serves (yet): a copy, before it is made.
   * False when the image is gone or already has MAX_STRAY_KEYS noted (then no copy is made:
   * the pass removes those first).
   */
  async noteStray(imageId: string, key: string, at: Date): Promise<boolean> {
    // (a key noted already stays as it is, its time too: true)
    const rows = await this.tx.query(
      `UPDATE product_images
          SET stray_keys = array_append(coalesce(stray_keys, '{}'), $2::text), stray_noted_at = $3
        WHERE id = $1 AND coalesce(cardinality(stray_keys), 0) < $4::int
          AND NOT ($2::text = ANY(coalesce(stray_keys, '{}')))
        RETURNING 1`,
      [imageId, key, at, MAX_STRAY_KEYS],
    );
    if (rows.length > 0) return true;
    const [noted] = await this.tx.query(
      `SELECT 1 FROM product_images WHERE id = $1 AND $2::text = ANY(stray_keys)`,
      [imageId, key],
    );
    return noted !== undefined;
  }

  /**
   * Takes `key` (as noted, TAKEN or not) off the image's strays, once it is gone from the store.
   * Never the key it is served from. False when it was not noted.
   */
  async forgetStray(imageId: string, key: string): Promise<boolean> {
    const rows = await this.tx.query(
      `UPDATE product_images
          SET stray_keys = NULLIF(array_remove(stray_keys, $2::text), '{}'),
              stray_noted_at = CASE WHEN array_remove(stray_keys, $2::text) = '{}' THEN NULL
                                    ELSE stray_noted_at END
        WHERE id = $1 AND $2::text = ANY(stray_keys) AND storage_key <> $2::text
        RETURNING 1`,
      [imageId, key],
    );
    return rows.length > 0;
  }

  /**
   * Marks a noted `key` TAKEN, in place, before the pass deletes it: no ready mark or move can
   * adopt it from then on (their guards name the bare key). Never the key it is served from.
   * False when it was not noted (served, or taken, meanwhile).
   */
  async takeStray(imageId: string, key: string): Promise<boolean> {
    const rows = await this.tx.query(
      `UPDATE product_images SET stray_keys = array_replace(stray_keys, $2::text, $3::text)
        WHERE id = $1 AND $2::text = ANY(stray_keys) AND storage_key <> $2::text
        RETURNING 1`,
      [imageId, key, `${TAKEN}${key}`],
    );
    return rows.length > 0;
  }

  /**
   * Marks a pending image ready, served from `servedKey` (its checked copy, noted as a stray
   * before it was made), and makes that the product's main image if it has none, in one
   * transaction. The copy is no stray any more; the upload's object is one now (served to no one;
   * noted until it is removed). Guarded (`WHERE status = 'pending'`, the upload's key, the copy
   * noted): of two concurrent or repeated notifications only one changes anything, and a copy the
   * pass has taken for a stray is never served. Returns the product id, or null when nothing
   * changed.
   */
  markReady(uploadKey: string, servedKey: string, at: Date): Promise<string | null> {
    return this.tx.run(async () => {
      const [row] = await this.tx.query<{ product_id: string }>(
        `UPDATE product_images
            SET status = 'ready', ready_at = $3, storage_key = $2,
                stray_keys = array_replace(stray_keys, $2::text, $1::text), stray_noted_at = $3
          WHERE storage_key = $1 AND status = 'pending' AND $2::text = ANY(stray_keys)
          RETURNING product_id`,
        [uploadKey, servedKey, at],
      );
      const productId = row?.product_id ?? null;
      if (productId !== null) await this.products.setImageIfNone(productId, servedKey, at);
      return productId;
    });
  }

  /**
   * Moves a ready image still served from its upload's key (made ready by a build before
   * 2026-12) to its checked copy `servedKey` (noted before it was made; no stray now), the
   * product's main image too if it was that one. Guarded on the upload's key and the note: of two
   * at once one moves it. False when nothing moved.
   */
  moveToServedKey(uploadKey: string, servedKey: string, at: Date): Promise<boolean> {
    return this.tx.run(async () => {
      const [row] = await this.tx.query<{ product_id: string }>(
        `UPDATE product_images
            SET storage_key = $2,
                stray_keys = NULLIF(array_remove(stray_keys, $2::text), '{}'),
                stray_noted_at = CASE WHEN array_remove(stray_keys, $2::text) = '{}' THEN NULL
                                      ELSE stray_noted_at END
          WHERE storage_key = $1 AND status = 'ready' AND $2::text = ANY(stray_keys)
          RETURNING product_id`,
        [uploadKey, servedKey],
      );
      if (!row) return false;
      await this.products.replaceImage(row.product_id, uploadKey, servedKey, at);
      return true;
    });
  }

  /**
   * Images with strays noted before `before`, the longest noted first, keyset-paged after
   * `after`; through the partial index of the rows that have any (migration ImageStrayKeys).
   */
  async findStray(before: Date, limit: number, after?: StrayImage): Promise<StrayImage[]> {
    const rows = await this.tx.query<{
      id: string;
      product_id: string;
      storage_key: string;
      stray_keys: string[];
      stray_noted_at: Date;
      created_at: Date;
    }>(
      `SELECT id, product_id, storage_key, stray_keys, stray_noted_at, created_at
         FROM product_images
        WHERE stray_keys IS NOT NULL AND stray_noted_at < $1
          AND (stray_noted_at, id) > ($2::timestamptz, $3::uuid)
        ORDER BY stray_noted_at, id
        LIMIT $4::int`,
      [before, ...keysetAfter(after?.notedAt, after?.id), limit],
    );
    return rows.map((r) => ({
      id: r.id,
      productId: r.product_id,
      key: r.storage_key,
      strayKeys: r.stray_keys,
      notedAt: r.stray_noted_at,
      createdAt: r.created_at,
    }));
  }

  /** Pending images created before `before`, oldest first, keyset-paged after `after`. */
  async findPending(before: Date, limit: number, after?: PendingImage): Promise<PendingImage[]> {
    const [afterAt, afterId] = keysetAfter(after?.createdAt, after?.id);
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(ProductImageEntity)
        .createQueryBuilder('i')
        .select(['i.id', 'i.storageKey', 'i.contentType', 'i.sizeBytes', 'i.createdAt'])
        .where(`i.status = 'pending' AND i.createdAt < :before`, { before })
        .andWhere('(i.createdAt, i.id) > (:afterAt, :afterId)', {
          afterAt,
          afterId,
        })
        .orderBy('i.createdAt', 'ASC')
        .addOrderBy('i.id', 'ASC')
        .limit(limit)
        .getMany(),
    );
    return rows.map((r) => ({
      id: r.id,
      key: r.storageKey,
      contentType: r.contentType,
      sizeBytes: r.sizeBytes,
      createdAt: r.createdAt,
    }));
  }

  /**
   * Ready images still served from their upload's key, oldest first, keyset-paged after
   * (`$1` created_at, `$2` id), `$3` of them. Raw SQL: its plan is asserted on this very text
   * (test/schema/images-served-from-upload-plan.test.ts); the predicate is the partial index's
   * (migration ImagesServedFromUploadIndex), so it matches under any plan.
   */
  static readonly SERVED_FROM_UPLOAD_SQL = `
    SELECT id, storage_key, content_type, size_bytes, created_at FROM product_images
     WHERE status = 'ready' AND storage_key = 'products/' || product_id::text || '/' || id::text
       AND (created_at, id) > ($1::timestamptz, $2::uuid)
     ORDER BY created_at, id
     LIMIT $3::int`;

  /**
   * Ready images an earlier build made ready, served from their upload's key (which their upload
   * URL writes), for the pass to move to a checked copy: oldest first, keyset-paged after `after`.
   */
  async findServedFromUpload(limit: number, after?: PendingImage): Promise<PendingImage[]> {
    const rows = await this.tx.query<{
      id: string;
      storage_key: string;
      content_type: string;
      size_bytes: number;
      created_at: Date;
    }>(ImageRepository.SERVED_FROM_UPLOAD_SQL, [
      ...keysetAfter(after?.createdAt, after?.id),
      limit,
    ]);
    return rows.map((r) => ({
      id: r.id,
      key: r.storage_key,
      contentType: r.content_type,
      sizeBytes: r.size_bytes,
      createdAt: r.created_at,
    }));
  }

  /**
   * Removes an image that is still pending (guarded: one made ready meanwhile stays), and has no
   * strays noted (the row is what names them: the pass removes them first).
   */
  async deletePending(key: string): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .getRepository(ProductImageEntity)
        .delete({ storageKey: key, status: 'pending', strayKeys: IsNull() }),
    );
    return (result.affected ?? 0) > 0;
  }
}
