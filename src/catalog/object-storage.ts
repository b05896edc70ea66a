import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  NotFound,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { APP_CONFIG, AppConfig } from '../config/config';

/** How long a pre-signed upload URL is valid (the store refuses it afterwards). */
export const UPLOAD_URL_TTL_SECONDS = 15 * 60;

export interface PresignedUpload {
  url: string;
  expiresAt: Date;
}

/**
 * The Cache-Control a ready image is served with: each is copied to a key of its own, written once
 * (ObjectStorage#copyForServing), so a cache may keep it for good.
 */
const SERVED_CACHE_CONTROL = 'public, max-age=31536000, immutable';

/** What the store says it holds under a key. */
export interface StoredObject {
  sizeBytes: number;
  contentType: string | undefined;
  /** The store's ETag of these bytes (quoted, as S3 sends it), when it sent one. */
  etag: string | undefined;
  /**
   * Headers the store serves the object with that the upload set beside the signed ones (the
   * presigned URL binds only content-type and content-length): `Content-Encoding: gzip` on an
   * image no browser can then decode, a `Cache-Control: no-store` that makes every view a miss,
   * a `Content-Disposition` that downloads it instead of showing it.
   */
  servedWith: { contentEncoding?: string; cacheControl?: string; contentDisposition?: string };
}

/** The store could not be asked (down, timed out, refused our credentials). */
export class ObjectStorageUnavailable extends Error {
  constructor(cause: unknown) {
    super(`object storage unavailable: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ObjectStorageUnavailable';
  }
}

/**
 * The store answered about one object with a refusal other than 404 (403: a key without
 * s3:ListBucket gets 403 for a missing object; another 4xx). Other objects may still be asked.
 */
export class ObjectStorageRefused extends ObjectStorageUnavailable {
  constructor(
    readonly key: string,
    readonly status: number,
    cause: unknown,
  ) {
    super(cause);
    this.name = 'ObjectStorageRefused';
  }
}

/**
 * The store refused to copy an upload it had just described (a 4xx other than 412 or 404 to
 * CopyObject): not an object it will not describe, but credentials or a bucket policy lacking what
 * CopyObject needs (s3:GetObject on the upload, s3:PutObject on its copy), or an upload it will not
 * copy (an archived storage class). The object passed its checks: it is retried, never removed.
 */
export class ObjectStorageCopyRefused extends ObjectStorageUnavailable {
  constructor(
    readonly key: string,
    readonly status: number,
    cause: unknown,
  ) {
    super(cause);
    this.name = 'ObjectStorageCopyRefused';
    this.message =
      `the store refused to copy ${key} (${status}: ${cause instanceof Error ? cause.message : String(cause)}) ` +
      `after describing it: the credentials or the bucket policy lack what CopyObject needs ` +
      `(s3:GetObject on the upload, s3:PutObject on its copy)`;
  }
}

/**
 * The S3-compatible object store (MinIO, R2, S3) product images live in, behind one injectable
 * so tests can point it at a local server. Endpoint, bucket, region, credentials and path style
 * come from the configuration (STORAGE_*).
 */
@Injectable()
export class ObjectStorage implements OnApplicationShutdown {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly baseUrl: string;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const s = config.storage;
    this.bucket = s.bucket;
    this.baseUrl = s.baseUrl;
    this.client = new S3Client({
      endpoint: s.endpoint,
      region: s.region,
      forcePathStyle: s.forcePathStyle,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      // No default CRC32 checksum: a pre-signed URL would carry the checksum of an empty body
      // (and stores without flexible checksums, such as older MinIO, R2, refuse the header).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // A stalled store must not hold a webhook request (and the store's retry) for minutes. The
      // request timeout only throws when told to (@smithy/node-http-handler: otherwise a warning,
      // and the call waits on a store that accepted the connection and never answers — the
      // notification's Idempotency-Key held "in use" for as long: contract review).
      // The request timeout ends at the response's headers: a body that then stopped (CopyObject
      // answers 200 at once and its XML when the copy is done) was read for ever — the webhook's
      // handler, its key's lock and the image reconciler's pass held until a restart. The socket
      // timeout ends a body silent that long.
      requestHandler: {
        connectionTimeout: 2_000,
        requestTimeout: 5_000,
        socketTimeout: 5_000,
        throwOnRequestTimeout: true,
      },
      maxAttempts: 2,
    });
  }

  /**
   * A pre-signed PUT URL (SigV4, query-string auth) for exactly this key, type and size:
   * `content-type` and `content-length` are signed headers, so the store refuses an upload
   * of another type or length, and it refuses the URL itself `UPLOAD_URL_TTL_SECONDS` after
   * `signedAt`.
   */
  async presignPut(
    key: string,
    contentType: string,
    sizeBytes: number,
    signedAt: Date,
  ): Promise<PresignedUpload> {
    // X-Amz-Date has whole seconds: the URL expires that many seconds after them
    const signingDate = new Date(Math.floor(signedAt.getTime() / 1000) * 1000);
    const url = await getSignedUrl(
      this.client,
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ContentType: contentType,
        ContentLength: sizeBytes,
      }),
      {
        expiresIn: UPLOAD_URL_TTL_SECONDS,
        signingDate,
        // the presigner leaves content-type unsigned by default; we want both bound to the URL
        signableHeaders: new Set(['content-type', 'content-length']),
      },
    );
    return { url, expiresAt: new Date(signingDate.getTime() + UPLOAD_URL_TTL_SECONDS * 1000) };
  }

  /** The object's size and type, or null when the store has no such key. */
  async head(key: string): Promise<StoredObject | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        sizeBytes: res.ContentLength ?? -1,
        contentType: res.ContentType,
        etag: res.ETag || undefined,
        servedWith: {
          contentEncoding: res.ContentEncoding || undefined,
          cacheControl: res.CacheControl || undefined,
          contentDisposition: res.ContentDisposition || undefined,
        },
      };
    } catch (err) {
      if (err instanceof NotFound) return null;
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (status === 404) return null;
      throw storeError(key, err);
    }
  }

  /**
   * Copies an upload, inside the store, to the key it is served from — one no upload URL can
   * write — as exactly the bytes that were checked (`CopySourceIfMatch` their ETag: the store
   * refuses the copy, 412, when another PUT replaced them meanwhile) and with only the headers we
   * set (`MetadataDirective: REPLACE`: the checked Content-Type and SERVED_CACHE_CONTROL; no
   * Content-Encoding, Content-Disposition or metadata the uploader added). 'changed' when the
   * upload is no longer those bytes, 'absent' when it is gone; another refusal throws
   * ObjectStorageCopyRefused.
   */
  async copyForServing(
    uploadKey: string,
    servedKey: string,
    checked: { contentType: string; etag: string | undefined },
  ): Promise<'copied' | 'changed' | 'absent'> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: servedKey,
          // our keys are letters, digits, '-' and '/': nothing to encode
          CopySource: `${this.bucket}/${uploadKey}`,
          CopySourceIfMatch: checked.etag,
          MetadataDirective: 'REPLACE',
          ContentType: checked.contentType,
          CacheControl: SERVED_CACHE_CONTROL,
        }),
      );
      return 'copied';
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (status === 412) return 'changed';
      if (status === 404) return 'absent';
      // (not "would not describe it": HeadObject just did)
      if (status !== undefined && status >= 400 && status < 500)
        throw new ObjectStorageCopyRefused(uploadKey, status, err);
      throw storeError(uploadKey, err);
    }
  }

  /** Removes an object (none there: nothing to do, as S3 answers). */
  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (status === 404) return;
      throw storeError(key, err);
    }
  }

  /** Where clients fetch a ready image (STORAGE_BASE_URL, or the bucket's own URL). */
  publicUrl(key: string): string {
    return `${this.baseUrl}/${key}`;
  }

  /** Whether a notification's bucket is ours. */
  isOurBucket(name: string): boolean {
    return name === this.bucket;
  }

  onApplicationShutdown(): void {
    this.client.destroy();
  }
}

/** A 4xx about this key: ObjectStorageRefused; anything else: the store could not be asked. */
function storeError(key: string, err: unknown): ObjectStorageUnavailable {
  const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
  return status !== undefined && status >= 400 && status < 500
    ? new ObjectStorageRefused(key, status, err)
    : new ObjectStorageUnavailable(err);
}
