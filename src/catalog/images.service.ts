import { Inject, Injectable } from '@nestjs/common';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { CatalogCache } from './catalog-cache';
import { CreateImageUploadDto, ImageUploadDto } from './dto/catalog.dto';
import { ImageRepository } from './image.repository';
import { ProductRepository } from './product.repository';

const UPLOAD_URL_TTL_MS = 15 * 60 * 1000;

/**
 * Product images: the API hands out a pre-signed upload URL (the client uploads straight to
 * object storage) and the storage's signed notification marks the image ready.
 */
@Injectable()
export class ImagesService {
  constructor(
    private readonly images: ImageRepository,
    private readonly products: ProductRepository,
    private readonly cache: CatalogCache,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async createUpload(productId: string, dto: CreateImageUploadDto): Promise<ImageUploadDto> {
    if (!(await this.products.findById(productId, { activeOnly: false }))) {
      throw new DomainError('PRODUCT_NOT_FOUND', 'No such product.');
    }
    const imageId = this.ids.uuid();
    const key = `products/${productId}/${imageId}`;
    const now = this.clock.now();
    await this.images.insertPending({ id: imageId, productId, key, contentType: dto.contentType, sizeBytes: dto.sizeBytes, at: now });
    const expiresAt = new Date(now.getTime() + UPLOAD_URL_TTL_MS);
    const expires = Math.floor(expiresAt.getTime() / 1000);
    const signature = this.sign(`PUT\n${key}\n${dto.contentType}\n${dto.sizeBytes}\n${expires}`);
    const uploadUrl =
      `${this.config.storage.baseUrl}/${key}?X-Expires=${expires}` +
      `&X-Content-Type=${encodeURIComponent(dto.contentType)}&X-Content-Length=${dto.sizeBytes}` +
      `&X-Signature=${signature}`;
    return { imageId, uploadUrl, expiresAt: expiresAt.toISOString() };
  }

  /** POST /v1/webhooks/storage: verified on the raw body, then idempotent. */
  async uploaded(rawBody: Buffer | undefined, signature: string | undefined): Promise<void> {
    if (!rawBody || !signature || !this.verify(rawBody, signature)) {
      throw new DomainError('WEBHOOK_SIGNATURE_INVALID', 'The notification signature is invalid.');
    }
    let key: unknown;
    try {
      key = (JSON.parse(rawBody.toString('utf8')) as { key?: unknown }).key;
    } catch {
      key = undefined;
    }
    if (typeof key !== 'string') throw new DomainError('BAD_REQUEST', 'The notification has no object key.');
    const productId = await this.images.markReady(key, `${this.config.storage.baseUrl}/${key}`, this.clock.now());
    if (!productId) throw new DomainError('NOT_FOUND', 'No image is waiting for this key.');
    await this.cache.invalidate();
  }

  sign(payload: string | Buffer): string {
    return createHmac('sha256', this.config.storage.signingSecret).update(payload).digest('hex');
  }

  private verify(body: Buffer, signature: string): boolean {
    const expected = Buffer.from(this.sign(body), 'hex');
    const given = Buffer.from(signature, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
