import { Inject, Injectable, Logger } from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { DomainError } from '../common/errors/domain-error';
import { bearerToken } from '../common/http/bearer-token';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { CatalogCache } from './catalog-cache';
import { CreateImageUploadDto, ImageUploadDto } from './dto/catalog.dto';
import {
  ImageRepository,
  MAX_STRAY_KEYS,
  PendingImage,
  StrayImage,
  TAKEN,
} from './image.repository';
import {
  ObjectStorage,
  ObjectStorageCopyRefused,
  ObjectStorageRefused,
  ObjectStorageUnavailable,
  UPLOAD_URL_TTL_SECONDS,
  StoredObject,
} from './object-storage';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { ProductRepository } from './product.repository';
import { productNotFound } from './product-not-found';

/** Images a product may have, ready and pending together (its page lists every ready one). */
export const MAX_IMAGES_PER_PRODUCT = 20;

/** The only keys we hand out upload URLs for: products/<product uuid>/<image uuid>. */
const IMAGE_KEY =
  /^products\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** The file extension of a served image's key, by its checked type. */
const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
};

/**
 * An S3 event notification as MinIO's webhook target (and S3 via EventBridge/SQS relays)
 * sends it: `Records[].eventName` (`s3:ObjectCreated:Put` from MinIO, `ObjectCreated:Put`
 * from S3) and `Records[].s3.{bucket.name, object.key}`, the key URL-encoded. Other fields
 * (MinIO's `EventName`/`Key`, sizes, ETags, …) are ignored: the store is asked instead.
 */
const s3Notification = z.object({
  Records: z
    .array(
      z.object({
        eventName: z.string().max(100),
        s3: z.object({
          bucket: z.object({ name: z.string().max(255) }),
          object: z.object({ key: z.string().min(1).max(3072) }),
        }),
      }),
    )
    .min(1)
    .max(100),
});

/** S3 event keys are URL-encoded (form style: `+` is a space). Null when malformed. */
function decodeEventKey(raw: string): string | null {
  try {
    return decodeURIComponent(raw.replace(/\+/g, '%20'));
  } catch {
    return null;
  }
}

/** A pending image younger than this is left to the store's notification. */
const NOTIFICATION_GRACE_MS = 2 * 60_000;
/**
 * A pending image whose object is still missing (or not as declared) this long after its upload
 * URL was signed was abandoned: its URL expired long ago (a PUT begun just before expiry has had
 * an hour to finish), so the row is removed.
 */
const ABANDONED_AFTER_MS = UPLOAD_URL_TTL_SECONDS * 1000 + 60 * 60_000;
/** Pending images read per page (oldest first), and pages per pass. */
const RECONCILE_BATCH = 200;
const RECONCILE_PAGES = 10;
/**
 * Refusals in a row that end a reconciliation pass: the store refuses the key, not one object.
 * Only of images not yet abandoned: a missing object under a key without s3:ListBucket is refused
 * too, and the oldest-first pass must get past any number of those to the uploads behind them.
 */
const REFUSALS_ENDING_A_PASS = 20;
/**
 * A pending image the store still refuses to describe this long after its upload URL was signed
 * is removed, as an abandoned one is: a week of passes has warned about it, and pending rows the
 * store never answers for must not pile up without end.
 */
const REFUSED_ABANDONED_AFTER_MS = 7 * 86_400_000;

/**
 * How long after an image's latest note the pass removes its strays: a copy is noted before it is
 * made and is served or removed within seconds by its confirmation, so what is still noted an hour
 * on a kill or a failure left. Liveness only, not safety: a copy the pass takes is marked TAKEN
 * first, and no ready mark adopts a taken copy, however late it comes.
 */
const STRAY_GRACE_MS = 60 * 60_000;

type Settled = 'ready' | 'unchanged' | 'absent' | 'mismatch';

/** What one reconciliation pass did (the job's result). */
export interface ReconciledImages {
  /** Pending images made ready (no notification came). */
  ready: number;
  /** Abandoned pending images removed. */
  removed: number;
  /** Images an earlier build made ready moved to a checked copy. */
  moved: number;
  /** Stray objects (copies served to no one, uploads of ready images) removed from the store. */
  strays: number;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Product images: the API hands out a pre-signed S3 PUT URL (the client uploads straight to
 * object storage); the store's event notification, after the object is confirmed with
 * HeadObject, marks the image ready.
 */
@Injectable()
export class ImagesService {
  private readonly logger = new Logger(ImagesService.name);
  /**
   * Where this process's last reconciliation pass stopped, its pages used up before the pending
   * images were (its next one goes on from there; one that read to the end leaves it unset: from
   * the oldest). Per process: two workers taking turns each keep their own place.
   * Pending images the store refuses to describe are kept a week, and more than a pass's pages of
   * them (an admin client asking for upload URLs it never uses, on a key without s3:ListBucket)
   * had every pass spend its pages on the same oldest ones: an upload whose notification was lost
   * behind them stayed pending until they aged out.
   */
  private resumeAfter?: PendingImage;
  /** Where the last pass stopped among ready images still served from their upload key, as above. */
  private resumeServedFromUploadAfter?: PendingImage;
  /** Where the last pass stopped among images with strays noted, as above. */
  private resumeStrayAfter?: StrayImage;
  private readonly expectedAuthorization: Buffer;

  constructor(
    private readonly images: ImageRepository,
    private readonly products: ProductRepository,
    private readonly storage: ObjectStorage,
    private readonly cache: CatalogCache,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.expectedAuthorization = sha256(config.storage.webhookToken);
  }

  async createUpload(productId: string, dto: CreateImageUploadDto): Promise<ImageUploadDto> {
    if (!(await this.products.findById(productId, { activeOnly: false }))) {
      throw productNotFound();
    }
    const imageId = this.ids.uuid();
    const key = `products/${productId}/${imageId}`;
    const now = this.clock.now();
    // signed before the row is written: no network call inside (or holding) a transaction
    const upload = await this.storage.presignPut(key, dto.contentType, dto.sizeBytes, now);
    const recorded = await this.images.insertPending(
      {
        id: imageId,
        productId,
        key,
        contentType: dto.contentType,
        sizeBytes: dto.sizeBytes,
        at: now,
      },
      MAX_IMAGES_PER_PRODUCT,
    );
    // every image is on the product's page: without a bound, a catalog writer's loop grew it
    // (and the pending rows) without end; an unused upload's place comes back when it is removed
    if (!recorded)
      throw new DomainError(
        'CONFLICT',
        `The product has ${MAX_IMAGES_PER_PRODUCT} images (ready, or uploads started and not yet removed): no more.`,
      );
    return { imageId, uploadUrl: upload.url, expiresAt: upload.expiresAt.toISOString() };
  }

  /**
   * POST /v1/webhooks/storage: the store's webhook target calls it with
   * `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`, checked first (checkToken). Each
   * ObjectCreated record for a pending image of ours is confirmed with HeadObject (the object
   * exists with the declared size and type) before the image is marked ready. Idempotent: a
   * repeated notification, or one for a key we never issued, changes nothing (and is
   * acknowledged, so the store does not retry it forever). A store we cannot ask → 503, so
   * the store retries later.
   */
  async uploaded(rawBody: Buffer | undefined): Promise<void> {
    const records = this.parse(rawBody);
    let changed = false;
    try {
      for (const record of records) {
        if (await this.confirm(record)) changed = true;
      }
    } finally {
      // also when a later record fails (503, the store retries): the ones confirmed are ready
      // now, and a retry would find them ready and change nothing, so nothing would invalidate
      if (changed) await this.cache.invalidate();
    }
  }

  /**
   * The store's `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`, or 400 WEBHOOK_SIGNATURE_INVALID.
   * Run by StorageTokenGuard, before the body is read and before any interceptor.
   */
  checkToken(authorization: string | undefined): void {
    // read as every bearer token is (the scheme in any case, one or more spaces), then compared
    // as fixed-length digests: the comparison time says nothing about the token's length
    const token = bearerToken(authorization);
    if (token === null || !timingSafeEqual(sha256(token), this.expectedAuthorization)) {
      throw new DomainError('WEBHOOK_SIGNATURE_INVALID', 'The notification token is invalid.');
    }
  }

  private parse(rawBody: Buffer | undefined): z.infer<typeof s3Notification>['Records'] {
    let json: unknown;
    try {
      json = rawBody ? JSON.parse(rawBody.toString('utf8')) : undefined;
    } catch {
      json = undefined;
    }
    const parsed = s3Notification.safeParse(json);
    if (!parsed.success) {
      throw new DomainError(
        'BAD_REQUEST',
        'The notification is not an S3 event notification (Records[].s3.object.key).',
      );
    }
    return parsed.data.Records;
  }

  /** True when this record made an image ready. */
  private async confirm(
    record: z.infer<typeof s3Notification>['Records'][number],
  ): Promise<boolean> {
    if (!/^(s3:)?ObjectCreated:/.test(record.eventName)) return false;
    if (!this.storage.isOurBucket(record.s3.bucket.name)) return false;
    const key = decodeEventKey(record.s3.object.key);
    const ids = key ? IMAGE_KEY.exec(key) : null;
    if (!key || !ids) return false;
    const image = await this.images.findByUpload(ids[1], ids[2]);
    if (!image) return false;

    let outcome: Settled;
    try {
      outcome =
        image.status === 'pending'
          ? await this.settle(key, image)
          : await this.afterReady(key, image);
    } catch (err) {
      if (err instanceof ObjectStorageCopyRefused) {
        // the object passed its checks and the store would not copy it: our credentials or its
        // policy, not the upload — 503, so the store retries until that is put right
        this.logger.error(`storage notification for ${key}: ${err.message}; answered 503`);
        throw storageUnavailable();
      }
      if (err instanceof ObjectStorageRefused) {
        // about this object (403: a key without s3:ListBucket asking for a missing one), not the
        // store: acknowledged — a 503 would have the store retry it for as long as the object is
        // gone (days) — and left pending for the reconciliation pass, which asks again
        this.logger.warn(
          `storage notification for ${key}: ${err.message}; left to the reconciliation pass`,
        );
        return false;
      }
      if (err instanceof ObjectStorageUnavailable) {
        this.logger.warn(err.message);
        throw storageUnavailable();
      }
      throw err;
    }
    if (outcome === 'absent')
      this.logger.warn(`storage notification for ${key}, but the store has no such object`);
    if (outcome === 'ready' && image.status === 'ready')
      this.logger.warn(
        `ready image ${key}, served from its upload key, was uploaded again through its URL: now served from a checked copy`,
      );
    return outcome === 'ready';
  }

  /**
   * The safety net under the store's notifications (lost, or a webhook target never
   * configured): every few minutes, each image pending for over NOTIFICATION_GRACE_MS is looked
   * up in the store and made ready when its object is there as declared — the same check and
   * the same guarded update as a notification, so the two racing change it once. An image whose
   * object is still missing or wrong ABANDONED_AFTER_MS after its URL was signed is removed. A
   * store that cannot be asked ends the pass; the next one tries again. One object the store
   * refuses to describe (403: a key without s3:ListBucket is refused, not told 404, for a missing
   * object) is left pending, and the pass goes on to the others (one warning per pass counts
   * them); REFUSALS_ENDING_A_PASS in a row of images not yet abandoned end it, as a store that
   * cannot be asked does; one still refused REFUSED_ABANDONED_AFTER_MS after signing is removed.
   * An upload that passed its checks and that the store would not copy (ObjectStorageCopyRefused:
   * our credentials or its policy) is left pending, however old, logged as an error; as many in a
   * row end the pass too.
   *
   * Then each ready image still served from its upload's key (made ready by an earlier build) is
   * moved to a checked copy, as a notification for it does (afterReady): that key is the one its
   * upload URL writes, and a PUT through it whose notification was lost, went to an instance of
   * the earlier build (which ignores notifications for ready images) or was refused a HeadObject
   * replaced what customers were served, for good. Oldest first, in pages as the pending ones, a
   * place kept between passes the same way; refusals count towards the same run.
   *
   * Last, the objects noted on images as served to no one over STRAY_GRACE_MS ago are removed
   * (removeStrays).
   */
  @OnJob(JobName.ReconcileImages)
  async reconcilePending(): Promise<ReconciledImages> {
    const now = this.clock.now().getTime();
    const before = new Date(now - NOTIFICATION_GRACE_MS);
    let ready = 0;
    let removed = 0;
    let moved = 0;
    const refusedDeletes: string[] = [];
    let missing = 0;
    let refused = 0;
    let firstRefused: ObjectStorageRefused | undefined;
    let copyRefused = 0;
    let firstCopyRefused: ObjectStorageCopyRefused | undefined;
    let refusedInARow = 0;
    let after = this.resumeAfter;
    this.resumeAfter = undefined; // (a pass ended early starts the next one from the oldest)
    try {
      for (let page = 0; page < RECONCILE_PAGES; page++) {
        const pending = await this.images.findPending(before, RECONCILE_BATCH, after);
        for (const image of pending) {
          const age = now - image.createdAt.getTime();
          let outcome: Settled;
          try {
            outcome = await this.settle(image.key, image);
            refusedInARow = 0;
          } catch (err) {
            if (err instanceof ObjectStorageCopyRefused) {
              // checked, and not copied: kept pending however old (never removed as abandoned)
              copyRefused++;
              firstCopyRefused ??= err;
              if (++refusedInARow >= REFUSALS_ENDING_A_PASS) throw err;
              continue;
            }
            if (!(err instanceof ObjectStorageRefused)) throw err;
            refused++;
            firstRefused ??= err;
            // (whatever is there, refused or missing, removed before its row: see below)
            if (
              age >= REFUSED_ABANDONED_AFTER_MS &&
              (await this.removedBeforeRow(image.key)) &&
              (await this.images.deletePending(image.key))
            )
              removed++;
            // refused about everything (the key itself): the store cannot be asked, as above
            if (age < ABANDONED_AFTER_MS && ++refusedInARow >= REFUSALS_ENDING_A_PASS) throw err;
            continue;
          }
          if (outcome === 'ready') ready++;
          const abandoned = age >= ABANDONED_AFTER_MS;
          // an object refused (another size or type, a header that breaks it) goes with its
          // row: it stayed in the bucket for good, at a key anyone may fetch from a public one
          // (growth review); its URL expired long ago, so no PUT can bring it back. Removed
          // before its row: the row removed first, a failed DELETE (a blink, the process killed in
          // between) left the object with nothing naming it — never removed (residue sweep); now
          // the row stays, and the next pass removes both
          if (
            (outcome === 'absent' || outcome === 'mismatch') &&
            abandoned &&
            (outcome === 'absent' || (await this.removedBeforeRow(image.key))) &&
            (await this.images.deletePending(image.key))
          )
            removed++;
        }
        if (pending.length < RECONCILE_BATCH) break;
        after = pending[pending.length - 1];
        if (page === RECONCILE_PAGES - 1) this.resumeAfter = after; // pages used up: on from here next time
      }

      let afterServed = this.resumeServedFromUploadAfter;
      this.resumeServedFromUploadAfter = undefined;
      for (let page = 0; page < RECONCILE_PAGES; page++) {
        const served = await this.images.findServedFromUpload(RECONCILE_BATCH, afterServed);
        for (const image of served) {
          try {
            const outcome = await this.afterReady(image.key, image);
            refusedInARow = 0;
            if (outcome === 'ready') moved++;
            if (outcome === 'absent') missing++;
          } catch (err) {
            if (err instanceof ObjectStorageCopyRefused) {
              copyRefused++;
              firstCopyRefused ??= err;
            } else if (err instanceof ObjectStorageRefused) {
              refused++;
              firstRefused ??= err;
            } else throw err;
            if (++refusedInARow >= REFUSALS_ENDING_A_PASS) throw err;
          }
        }
        if (served.length < RECONCILE_BATCH) break;
        afterServed = served[served.length - 1];
        if (page === RECONCILE_PAGES - 1) this.resumeServedFromUploadAfter = afterServed;
      }
    } catch (err) {
      if (!(err instanceof ObjectStorageUnavailable)) throw err;
      // (a copy refused is logged below, as what it is)
      if (!(err instanceof ObjectStorageCopyRefused))
        this.logger.warn(`pending images not reconciled: ${err.message}`);
    } finally {
      if (ready > 0 || moved > 0) await this.cache.invalidate();
    }
    // whatever ended the part before (refusals in a row, a store that could not be asked then):
    // an abandoned pending image with strays noted is removed only once they are
    const removing = { deleted: 0 };
    try {
      await this.removeStrays(now, removing, refusedDeletes);
    } catch (err) {
      if (!(err instanceof ObjectStorageUnavailable)) throw err;
      this.logger.warn(`stray objects not removed: ${err.message}`);
    }
    const strays = removing.deleted;
    if (firstRefused) {
      this.logger.warn(
        `${refused} image(s) left as they were, the store refusing to describe them ` +
          `(${firstRefused.status} for ${firstRefused.key}, …): a key without s3:ListBucket gets 403 for a missing object`,
      );
    }
    if (firstCopyRefused) {
      this.logger.error(
        `${copyRefused} checked upload(s) not copied (left pending, or served from their upload key): ${firstCopyRefused.message}`,
      );
    }
    if (refusedDeletes.length > 0) {
      this.logger.error(
        `${refusedDeletes.length} stray object(s) the store refuses to remove (${refusedDeletes[0]}, …): ` +
          'left in the bucket, no longer noted — a key without s3:DeleteObject',
      );
    }
    if (missing > 0) {
      this.logger.warn(
        `${missing} ready image(s) served from their upload key have no object in the store`,
      );
    }
    if (ready > 0 || removed > 0 || moved > 0) {
      this.logger.warn(
        `images reconciled: ${ready} made ready (no notification came), ${removed} abandoned removed, ` +
          `${moved} made ready by an earlier build moved to a checked copy`,
      );
    }
    // (every image made ready has its upload noted, deleted again here once its URL has expired:
    // most of these are gone already — the store does not say — so this is no warning)
    if (strays > 0) this.logger.log(`${strays} object(s) noted as served to no one deleted`);
    return { ready, removed, moved, strays };
  }

  /**
   * Asks the store about a pending image: when the object is there with the declared size and
   * type and no header that breaks it, it is copied to a key of its own, as those bytes, with our
   * headers only (copyForServing), and the image is marked ready (guarded), served from the copy;
   * the upload is removed. The upload URL stays valid for its 15 minutes, but writes only the
   * upload's key, which nobody is served. Throws ObjectStorageUnavailable when the store cannot be
   * asked (ObjectStorageCopyRefused when it described the upload and would not copy it). The copy's
   * key is noted on the row before it is made; a confirmation that a concurrent one won removes its
   * copy and the note; an update that fails leaves the copy noted (it may have committed, its
   * answer lost: the copy is served then, and the note is gone with it). The upload's key is noted
   * by the update and stays noted after its removal, until the pass removes it again once its URL
   * has expired. What a process dying anywhere in between (or a failed DELETE) leaves — a full
   * copy, served to no one — is named, and the pass removes it (removeStrays); the next
   * notification or pass makes another copy.
   */
  private async settle(
    key: string,
    image: { id: string; contentType: string; sizeBytes: number },
  ): Promise<Settled> {
    const stored = await this.storage.head(key);
    if (!stored) return 'absent';
    if (stored.sizeBytes !== image.sizeBytes || stored.contentType !== image.contentType) {
      this.logger.warn(
        `storage object ${key} is ${stored.sizeBytes} bytes of ${stored.contentType ?? 'no type'}, ` +
          `not the declared ${image.sizeBytes} bytes of ${image.contentType}: left pending`,
      );
      return 'mismatch';
    }
    // headers the uploader added beside the signed ones, served to every customer as set: those
    // that break the image (images review: a gzip-encoded image broke in every browser, a no-store
    // one was never cached, an attachment is downloaded, not shown) — not harmless ones, nor a
    // store's defaults (`public, max-age=3600`, `inline`, `identity`)
    const harmful = harmfulServingHeaders(stored.servedWith);
    if (harmful.length > 0) {
      this.logger.warn(
        `storage object ${key} was uploaded with ${harmful.join(', ')}, which its customers would be served: left pending`,
      );
      return 'mismatch';
    }
    const servedKey = await this.noteCopy(image.id, key, image.contentType);
    if (servedKey === null) return 'unchanged';
    // (a copy that throws may have been made — a timeout —: it stays noted, for the pass)
    const copied = await this.storage.copyForServing(key, servedKey, {
      contentType: image.contentType,
      etag: stored.etag,
    });
    if (copied !== 'copied') {
      // (not copied — or copied by a first attempt whose answer was lost, the retry told 404/412)
      await this.removeStray(image.id, servedKey);
      if (copied === 'absent') return 'absent';
      // another PUT through the URL since the HeadObject: its own notification checks it
      this.logger.warn(`storage object ${key} changed while it was checked: left pending`);
      return 'unchanged';
    }
    // a failure (a lock timeout, a connection lost) is thrown as it is, the copy left noted: the
    // update may have committed all the same (its COMMIT's answer lost), the copy served then —
    // removing it here broke the image for good — and if it did not, the pass removes the copy
    const productId = await this.images.markReady(key, servedKey, this.clock.now());
    if (productId === null) {
      // a concurrent confirmation made it ready from its own copy: this one is served to no one
      await this.removeStray(image.id, servedKey);
      return 'unchanged';
    }
    // the upload, served to no one now: removed, and left noted (markReady noted it) for the pass
    // to remove again once its URL has expired — a PUT through it brings it back, and that PUT's
    // notification may be lost
    await this.deleteQuietly(key);
    return 'ready';
  }

  /**
   * A notification for an image already ready: another PUT through its upload URL (valid 15
   * minutes), or a late duplicate. One served from a copy of its own is not touched by it; the
   * upload's object, served to no one, is removed. One an earlier build made ready is served from
   * the upload's key itself, which that PUT just replaced: it gets a copy of its own now, as a
   * new upload does (its size and type are the signed ones; the headers become ours), and the
   * upload URL can change it no more. Its upload's object stays in the store: pages handed out
   * before the move still name it.
   */
  private async afterReady(
    key: string,
    image: { id: string; key: string; contentType: string },
  ): Promise<Settled> {
    if (image.key !== key) {
      // its upload's object, PUT again (or a late duplicate): noted (it is, unless the image was
      // made ready before the notes) and removed — again by the pass once the URL has expired
      if (!(await this.images.noteStray(image.id, key, this.clock.now())))
        this.logger.warn(
          `upload ${key} of a ready image not noted (its image takes no more notes)`,
        );
      await this.deleteQuietly(key);
      return 'unchanged';
    }
    const stored = await this.storage.head(key);
    if (!stored) return 'absent';
    const servedKey = await this.noteCopy(image.id, key, image.contentType);
    if (servedKey === null) return 'unchanged';
    const copied = await this.storage.copyForServing(key, servedKey, {
      contentType: image.contentType,
      etag: stored.etag,
    });
    if (copied !== 'copied') {
      await this.removeStray(image.id, servedKey); // (as in settle)
      return 'unchanged';
    }
    // (a failure thrown as it is, the copy left noted: as in settle)
    const moved = await this.images.moveToServedKey(key, servedKey, this.clock.now());
    if (!moved) {
      await this.removeStray(image.id, servedKey);
      return 'unchanged';
    }
    // the upload's object is left: pages handed out before the move name it (the catalog cache
    // keeps them for seconds, a client that fetched one for as long as it likes), and a removal
    // broke the image on each of them
    return 'ready';
  }

  /**
   * A key of its own for each copy: written once, by us, and never by an upload URL (those sign
   * `products/<product>/<image>` exactly); two confirmations at once never write the same one.
   */
  private servedKey(uploadKey: string, contentType: string): string {
    return `${uploadKey}.${this.ids.uuid()}.${EXTENSIONS[contentType] ?? 'img'}`;
  }

  /**
   * Removes an abandoned upload's object before its row is: false (logged) when the store could
   * not be asked — the row is then kept, for the next pass to try both again. A DELETE the store
   * refuses (4xx: a key without s3:DeleteObject, README) will be refused again: the row goes all
   * the same (kept, it would count in the product's images for good and be asked about on every
   * pass), the object left as before, said once at error.
   */
  private async removedBeforeRow(key: string): Promise<boolean> {
    try {
      await this.storage.delete(key);
    } catch (err) {
      if (!(err instanceof ObjectStorageRefused)) {
        this.logger.warn(`abandoned upload ${key} not removed yet: ${String(err)}`);
        return false;
      }
      this.logger.error(`abandoned upload ${key}: the store refuses to remove it (${String(err)})`);
    }
    return true;
  }

  /**
   * A key for the image's next checked copy, noted on its row before the copy is made (a kill
   * between the copy and the ready mark left a full copy that nothing named, for good); null,
   * logged, when the row takes no more notes (MAX_STRAY_KEYS unremoved: the pass removes them
   * first, and the image stays as it is until then).
   */
  private async noteCopy(
    imageId: string,
    key: string,
    contentType: string,
  ): Promise<string | null> {
    const servedKey = this.servedKey(key, contentType);
    if (await this.images.noteStray(imageId, servedKey, this.clock.now())) return servedKey;
    this.logger.warn(
      `image ${key} takes no more notes (${MAX_STRAY_KEYS} objects noted and not yet removed, or it is gone): not copied`,
    );
    return null;
  }

  /**
   * Removes a copy of the image served to no one (one that lost, or was never made), and then its
   * note; a removal that fails leaves it noted (logged), for the pass.
   */
  private async removeStray(imageId: string, key: string): Promise<void> {
    if (!(await this.deleteQuietly(key))) return;
    try {
      await this.images.forgetStray(imageId, key);
    } catch (err) {
      this.logger.warn(`stray ${key} removed, its note left for the pass: ${String(err)}`);
    }
  }

  /** Deletes an object served to no one; false (logged) when it failed — it is noted, for the pass. */
  private async deleteQuietly(key: string): Promise<boolean> {
    try {
      await this.storage.delete(key);
      return true;
    } catch (err) {
      this.logger.warn(
        `storage object ${key} (served to no one) not removed yet, left to the pass: ${String(err)}`,
      );
      return false;
    }
  }

  /**
   * Removes the strays noted on images over STRAY_GRACE_MS ago (an image's upload only once its URL
   * can write it no more, ABANDONED_AFTER_MS after it was signed): each marked TAKEN on its row
   * first (in place: no ready mark or move can adopt it from then on, and a kill before its DELETE
   * leaves it named), then deleted from the store, then taken off the row. One found TAKEN (a pass
   * that died, or a store that could not be asked) is deleted again. A store that cannot be asked
   * ends this part of the pass (ObjectStorageUnavailable), the key left TAKEN; a DELETE it refuses
   * (4xx: no s3:DeleteObject) will be refused again: the key goes off the row all the same, said
   * at error. Counts the deletes in `removing` as they are done.
   */
  private async removeStrays(
    now: number,
    removing: { deleted: number },
    refusedDeletes: string[],
  ): Promise<void> {
    let after = this.resumeStrayAfter;
    this.resumeStrayAfter = undefined;
    for (let page = 0; page < RECONCILE_PAGES; page++) {
      const images = await this.images.findStray(
        new Date(now - STRAY_GRACE_MS),
        RECONCILE_BATCH,
        after,
      );
      for (const image of images) {
        const uploadKey = `products/${image.productId}/${image.id}`;
        for (const noted of image.strayKeys) {
          const taken = noted.startsWith(TAKEN);
          const key = taken ? noted.slice(TAKEN.length) : noted;
          if (!taken) {
            if (key === uploadKey && now - image.createdAt.getTime() < ABANDONED_AFTER_MS) continue;
            if (!(await this.images.takeStray(image.id, key))) continue;
          }
          try {
            await this.storage.delete(key);
            removing.deleted++;
          } catch (err) {
            if (!(err instanceof ObjectStorageRefused)) throw err; // (left TAKEN)
            refusedDeletes.push(key);
          }
          await this.images.forgetStray(image.id, `${TAKEN}${key}`);
        }
      }
      if (images.length < RECONCILE_BATCH) break;
      after = images[images.length - 1];
      if (page === RECONCILE_PAGES - 1) this.resumeStrayAfter = after;
    }
  }
}

/** 503 to the store's webhook target: it retries the notification later. */
function storageUnavailable(): DomainError {
  return new DomainError(
    'SERVICE_UNAVAILABLE',
    'Object storage is unavailable; retry the notification later.',
    { headers: { 'Retry-After': '5' } },
  );
}

/** The serving headers of a stored image that would break it for customers, by name. */
function harmfulServingHeaders(served: StoredObject['servedWith']): string[] {
  const harmful: string[] = [];
  const encoding = served.contentEncoding?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') harmful.push(`Content-Encoding: ${encoding}`);
  if (/\b(no-store|no-cache|private|(s-)?max-age=0+\b)/i.test(served.cacheControl ?? ''))
    harmful.push(`Cache-Control: ${served.cacheControl}`);
  if (/^\s*attachment\b/i.test(served.contentDisposition ?? ''))
    harmful.push('Content-Disposition: attachment');
  return harmful;
}
