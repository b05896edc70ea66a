import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  IsUUID,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { Omittable } from '../../common/http/omittable';
import { PageQueryDto } from '../../common/pagination/page-query.dto';
import { MoneyDto } from '../../common/money/money.dto';
import { CharLength, MaxChars } from '../../common/http/char-length';
import { SearchTextWithin } from '../search-text';
import {
  NoDirectionControls,
  NoStackedMarks,
  PlainCode,
  SingleLine,
  VisibleName,
} from '../../common/http/single-line';

/** The largest money amount accepted in a request (minor units: 10 million in a 2-decimal currency). */
const MAX_MONEY_AMOUNT = 1_000_000_000;

export class MoneyInputDto {
  @ApiProperty({
    type: 'integer',
    description: 'Integer minor units',
    example: 24900,
    minimum: 0,
    maximum: MAX_MONEY_AMOUNT,
  })
  @IsInt()
  @Min(0)
  @Max(MAX_MONEY_AMOUNT)
  amount!: number;

  @ApiProperty({
    example: 'INR',
    pattern: '^[A-Z]{3}$',
    description: "ISO 4217; the shop's currency",
  })
  @Matches(/^[A-Z]{3}$/)
  currency!: string;
}

/** Lower-case words of letters and digits joined by single hyphens. */
const SLUG_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/;

export class CreateCategoryDto {
  @ApiProperty({
    example: 'Healthy snacks',
    minLength: 1,
    maxLength: 200,
    description:
      'One line (no line breaks, tabs or direction controls); shows a letter or digit; no invisible characters (400)',
  })
  @IsString()
  @CharLength(1, 200)
  @SingleLine()
  @VisibleName()
  name!: string;
  @ApiProperty({ example: 'healthy-snacks', maxLength: 100, pattern: SLUG_PATTERN.source })
  @Matches(SLUG_PATTERN)
  @MaxLength(100)
  slug!: string;
}

export class CreateProductDto {
  @ApiProperty({
    example: 'TEA-ASSAM-250',
    minLength: 1,
    maxLength: 64,
    description:
      'Unique regardless of letter case and Unicode form (`tea-assam-250` is taken by `TEA-ASSAM-250`: 409 `SKU_TAKEN`); ' +
      'in NFKC form, without blanks at either end or invisible characters (400)',
  })
  @IsString()
  @CharLength(1, 64)
  @SingleLine()
  @PlainCode()
  sku!: string;
  @ApiProperty({
    example: 'Assam tea, 250 g',
    minLength: 1,
    maxLength: 200,
    description:
      'One line (no line breaks, tabs or direction controls); shows a letter or digit; no invisible characters (400)',
  })
  @IsString()
  @CharLength(1, 200)
  @SingleLine()
  @VisibleName()
  name!: string;
  @ApiProperty({ example: 'Malty, strong black tea.', maxLength: 10_000 })
  @IsString()
  @MaxChars(10_000)
  description!: string;
  @ApiProperty({
    type: MoneyInputDto,
    description:
      'The amount at most `ORDER_MAXIMUM_AMOUNT` (default 99,999,999), the largest order the payment provider charges (400)',
  })
  @IsObject()
  @ValidateNested()
  @Type(() => MoneyInputDto)
  price!: MoneyInputDto;
  @ApiPropertyOptional({ format: 'uuid' }) @IsOptional() @IsUUID() categoryId?: string;
  @ApiProperty({ type: 'integer', minimum: 0, maximum: 10_000_000, example: 100 })
  @IsInt()
  @Min(0)
  @Max(10_000_000)
  initialStock!: number;
}

export class UpdateProductDto {
  @ApiPropertyOptional({
    example: 'Assam tea, 500 g',
    minLength: 1,
    maxLength: 200,
    description:
      'One line (no line breaks, tabs or direction controls); shows a letter or digit; no invisible characters (400)',
  })
  @Omittable()
  @IsString()
  @CharLength(1, 200)
  @SingleLine()
  @VisibleName()
  name?: string;
  @ApiPropertyOptional({ maxLength: 10_000 })
  @Omittable()
  @IsString()
  @MaxChars(10_000)
  description?: string;
  @ApiPropertyOptional({
    type: MoneyInputDto,
    description:
      'The amount at most `ORDER_MAXIMUM_AMOUNT` (default 99,999,999), the largest order the payment provider charges (400)',
  })
  @Omittable()
  @IsObject()
  @ValidateNested()
  @Type(() => MoneyInputDto)
  price?: MoneyInputDto;
  @ApiPropertyOptional({
    type: String,
    format: 'uuid',
    nullable: true,
    description: '`null` takes the product out of its category',
  })
  @IsOptional()
  @IsUUID()
  categoryId?: string | null;
  @ApiPropertyOptional({ example: true }) @Omittable() @IsBoolean() active?: boolean;
}

const PRODUCT_SORTS = ['relevance', 'newest', 'price_asc', 'price_desc', 'popular'] as const;
export type ProductSort = (typeof PRODUCT_SORTS)[number];

export class ListProductsDto extends PageQueryDto {
  @ApiPropertyOptional({ format: 'uuid' }) @IsOptional() @IsUUID() categoryId?: string;
  @ApiPropertyOptional({
    description:
      'Full-text search in name and description (at most 200 characters, and 400 in its NFKC form: some characters stand for several)',
    minLength: 1,
    maxLength: 200,
  })
  @IsOptional()
  @IsString()
  @CharLength(1, 200)
  @SearchTextWithin(400)
  q?: string;
  @ApiPropertyOptional({ enum: PRODUCT_SORTS, default: 'relevance' })
  @IsOptional()
  @IsIn(PRODUCT_SORTS)
  sort: ProductSort = 'relevance';
}

export class CategoryDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() slug!: string;
}

export class CategoryListDto {
  @ApiProperty({ type: [CategoryDto] }) items!: CategoryDto[];
}

export class RatingDto {
  @ApiProperty({
    nullable: true,
    type: Number,
    description: 'Mean rating 1..5; null without reviews',
  })
  average!: number | null;
  @ApiProperty({ type: 'integer', minimum: 0 }) count!: number;
}

export class ProductSummaryDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() sku!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ type: MoneyDto }) price!: MoneyDto;
  @ApiProperty({ type: 'integer', minimum: 0, description: 'On hand minus reserved' })
  availableQuantity!: number;
  @ApiProperty({ type: RatingDto }) rating!: RatingDto;
  @ApiProperty({ nullable: true, type: String, format: 'uuid' }) categoryId!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'uri' }) imageUrl!: string | null;
}

export class ProductDto extends ProductSummaryDto {
  @ApiProperty() description!: string;
  @ApiProperty({ type: 'string', format: 'uri', isArray: true }) images!: string[];
  @ApiProperty() active!: boolean;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time' }) updatedAt!: string;
}

export class ProductPageDto {
  @ApiProperty({ type: [ProductSummaryDto] }) items!: ProductSummaryDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

export class CreateReviewDto {
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 5, example: 5 })
  @IsInt()
  @Min(1)
  @Max(5)
  rating!: number;
  @ApiProperty({
    maxLength: 4000,
    example: 'Strong and fresh.',
    description:
      'Line breaks allowed; text-direction controls (U+202A–202E, U+2066–2069) and more than 6 combining marks on one character are refused',
  })
  @IsString()
  @MaxChars(4000)
  @NoDirectionControls()
  @NoStackedMarks()
  comment!: string;
}

export class ReviewDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 5 }) rating!: number;
  @ApiProperty() comment!: string;
  @ApiProperty() authorName!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
}

export class ReviewPageDto {
  @ApiProperty({ type: [ReviewDto] }) items!: ReviewDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

export class ProductListDto {
  @ApiProperty({ type: [ProductSummaryDto] }) items!: ProductSummaryDto[];
}

const IMAGE_CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp'] as const;

export class CreateImageUploadDto {
  @ApiProperty({ enum: IMAGE_CONTENT_TYPES, example: 'image/jpeg' })
  @IsIn(IMAGE_CONTENT_TYPES)
  contentType!: string;
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 10485760, example: 204800 })
  @IsInt()
  @Min(1)
  @Max(10_485_760)
  sizeBytes!: number;
}

export class ImageUploadDto {
  @ApiProperty({ format: 'uuid' }) imageId!: string;
  @ApiProperty({
    format: 'uri',
    description:
      'PUT exactly `sizeBytes` bytes here with the declared Content-Type (both are signed into the URL: another Content-Length or a chunked body is refused by the store), before `expiresAt`',
  })
  uploadUrl!: string;
  @ApiProperty({ format: 'date-time' }) expiresAt!: string;
}
