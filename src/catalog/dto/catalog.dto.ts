import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  IsUUID,
  Length,
  Matches,
  Max,
  MaxLength,
  Min,
  NotEquals,
  ValidateNested,
} from 'class-validator';
import { PageQueryDto } from '../../common/pagination/page-query.dto';
import { MoneyDto } from '../../orders/dto/order.response';

/** The largest money amount accepted in a request (minor units: 10 million in a 2-decimal currency). */
export const MAX_MONEY_AMOUNT = 1_000_000_000;

export class MoneyInputDto {
  @ApiProperty({ description: 'Integer minor units', example: 24900, minimum: 0, maximum: MAX_MONEY_AMOUNT })
  @IsInt()
  @Min(0)
  @Max(MAX_MONEY_AMOUNT)
  amount!: number;

  @ApiProperty({ example: 'INR' })
  @Matches(/^[A-Z]{3}$/)
  currency!: string;
}

export class CreateCategoryDto {
  @ApiProperty() @IsString() @Length(1, 200) name!: string;
  @ApiProperty({ example: 'healthy-snacks' })
  @Matches(/^[a-z0-9]+(-[a-z0-9]+)*$/)
  @MaxLength(100)
  slug!: string;
}

export class CreateProductDto {
  @ApiProperty() @IsString() @Length(1, 64) sku!: string;
  @ApiProperty() @IsString() @Length(1, 200) name!: string;
  @ApiProperty() @IsString() @MaxLength(10_000) description!: string;
  @ApiProperty({ type: MoneyInputDto })
  @ValidateNested()
  @Type(() => MoneyInputDto)
  price!: MoneyInputDto;
  @ApiPropertyOptional({ format: 'uuid' }) @IsOptional() @IsUUID() categoryId?: string;
  @ApiProperty({ minimum: 0 }) @IsInt() @Min(0) @Max(10_000_000) initialStock!: number;
}

export class UpdateProductDto {
  @ApiPropertyOptional() @IsOptional() @IsString() @Length(1, 200) name?: string;
  @ApiPropertyOptional() @IsOptional() @IsString() @MaxLength(10_000) description?: string;
  @ApiPropertyOptional({ type: MoneyInputDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => MoneyInputDto)
  price?: MoneyInputDto;
  @ApiPropertyOptional({ format: 'uuid' }) @IsOptional() @IsUUID() categoryId?: string;
  @ApiPropertyOptional() @IsOptional() @IsBoolean() active?: boolean;
}

export class StockAdjustmentDto {
  @ApiProperty({ description: 'Units added (positive) or removed (negative)' })
  @IsInt()
  @NotEquals(0)
  @Min(-10_000_000)
  @Max(10_000_000)
  delta!: number;

  @ApiProperty() @IsString() @Length(1, 500) reason!: string;
}

export const PRODUCT_SORTS = ['relevance', 'newest', 'price_asc', 'price_desc', 'popular'] as const;
export type ProductSort = (typeof PRODUCT_SORTS)[number];

export class ListProductsDto extends PageQueryDto {
  @ApiPropertyOptional({ format: 'uuid' }) @IsOptional() @IsUUID() categoryId?: string;
  @ApiPropertyOptional({ description: 'Full-text search in name and description' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
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

export class RatingDto {
  @ApiProperty({ nullable: true, type: Number }) average!: number | null;
  @ApiProperty() count!: number;
}

export class ProductSummaryDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() sku!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ type: MoneyDto }) price!: MoneyDto;
  @ApiProperty() availableQuantity!: number;
  @ApiProperty({ type: RatingDto }) rating!: RatingDto;
  @ApiProperty({ nullable: true, type: String }) categoryId!: string | null;
  @ApiProperty({ nullable: true, type: String }) imageUrl!: string | null;
}

export class ProductDto extends ProductSummaryDto {
  @ApiProperty() description!: string;
  @ApiProperty({ type: [String] }) images!: string[];
  @ApiProperty() active!: boolean;
  @ApiProperty() createdAt!: string;
  @ApiProperty() updatedAt!: string;
}

export class ProductPageDto {
  @ApiProperty({ type: [ProductSummaryDto] }) items!: ProductSummaryDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

export class StockLevelDto {
  @ApiProperty() onHand!: number;
  @ApiProperty() reserved!: number;
  @ApiProperty() available!: number;
}

export class CreateReviewDto {
  @ApiProperty({ minimum: 1, maximum: 5 }) @IsInt() @Min(1) @Max(5) rating!: number;
  @ApiProperty({ maxLength: 4000 }) @IsString() @MaxLength(4000) comment!: string;
}

export class ReviewDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() rating!: number;
  @ApiProperty() comment!: string;
  @ApiProperty() authorName!: string;
  @ApiProperty() createdAt!: string;
}

export class ReviewPageDto {
  @ApiProperty({ type: [ReviewDto] }) items!: ReviewDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

export class ProductListDto {
  @ApiProperty({ type: [ProductSummaryDto] }) items!: ProductSummaryDto[];
}

export const IMAGE_CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp'] as const;

export class CreateImageUploadDto {
  @ApiProperty({ enum: IMAGE_CONTENT_TYPES }) @IsIn(IMAGE_CONTENT_TYPES) contentType!: string;
  @ApiProperty({ maximum: 10485760 }) @IsInt() @Min(1) @Max(10_485_760) sizeBytes!: number;
}

export class ImageUploadDto {
  @ApiProperty({ format: 'uuid' }) imageId!: string;
  @ApiProperty() uploadUrl!: string;
  @ApiProperty() expiresAt!: string;
}
