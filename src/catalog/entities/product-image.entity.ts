import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryColumn,
  Unique,
} from 'typeorm';
import { ProductEntity } from './product.entity';

export type ProductImageStatus = 'pending' | 'ready';

/**
 * A product image, `product_images` (migrations/1763800004000-ReviewsRecommendationsImages.ts):
 * pending from the moment its pre-signed upload URL is handed out until the object store reports
 * the upload (confirmed with HeadObject).
 */
@Entity('product_images')
@Unique('product_images_storage_key_key', ['storageKey'])
@Index('product_images_product_idx', ['productId', 'createdAt'])
@Index('product_images_served_from_upload_idx', ['createdAt', 'id'], {
  where: `status = 'ready' AND storage_key = 'products/' || product_id::text || '/' || id::text`,
})
@Check(
  'product_images_content_type_check',
  `content_type IN ('image/jpeg', 'image/png', 'image/webp')`,
)
@Check('product_images_size_bytes_check', `size_bytes BETWEEN 1 AND 10485760`)
@Check('product_images_status_check', `status IN ('pending', 'ready')`)
@Index('product_images_stray_idx', ['strayNotedAt', 'id'], { where: 'stray_keys IS NOT NULL' })
@Check(
  'product_images_stray_keys_check',
  `(stray_keys IS NULL) = (stray_noted_at IS NULL)
               AND (stray_keys IS NULL OR cardinality(stray_keys) BETWEEN 1 AND 32)`,
)
export class ProductImageEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'product_images_pkey' })
  id!: string;

  @Column('uuid', { name: 'product_id' })
  productId!: string;

  @ManyToOne(() => ProductEntity, { nullable: false })
  @JoinColumn({ name: 'product_id', foreignKeyConstraintName: 'product_images_product_id_fkey' })
  product?: ProductEntity;

  /**
   * The key in the bucket it is served from: its upload's, products/<product id>/<image id>, while
   * pending (and if an earlier build made it ready, until the reconciliation pass moves it); a
   * checked copy's, <upload key>.<uuid>.<ext>, once ready.
   */
  @Column('text', { name: 'storage_key' })
  storageKey!: string;

  @Column('text', { name: 'content_type' })
  contentType!: string;

  @Column('integer', { name: 'size_bytes' })
  sizeBytes!: number;

  @Column('text', { default: 'pending' })
  status!: ProductImageStatus;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'ready_at', nullable: true })
  readyAt!: Date | null;

  /**
   * Objects of this image in the bucket that nothing serves, or soon may not (migration
   * 1763800071000-ImageStrayKeys): a checked copy, noted before it is made (until it is served or
   * removed), and the upload of an image made ready (until removed). What a kill or a failed
   * DELETE leaves noted here the reconciliation pass removes. Null when there are none.
   */
  @Column('text', { name: 'stray_keys', array: true, nullable: true })
  strayKeys!: string[] | null;

  /** When the latest of `strayKeys` was noted (null with them). */
  @Column('timestamptz', { name: 'stray_noted_at', nullable: true })
  strayNotedAt!: Date | null;
}
