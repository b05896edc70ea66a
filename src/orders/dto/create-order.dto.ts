import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsInt,
  IsUUID,
  Max,
  Min,
  IsObject,
  ValidateNested,
} from 'class-validator';
import { Omittable } from '../../common/http/omittable';
import { MAX_ORDER_LINES } from '../../common/order-lines';

export class OrderItemInputDto {
  @ApiProperty({ format: 'uuid', example: '0b6f7a52-1d0e-4c8e-9a57-3f2d1c8e4a10' })
  // UUIDs are case-insensitive: an upper-case id names the same product (it used to be refused
  // as PRODUCT_UNAVAILABLE, its snapshot row coming back in lower case)
  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' ? value.toLowerCase() : value,
  )
  @IsUUID()
  productId!: string;

  @ApiProperty({ type: 'integer', minimum: 1, maximum: 1000, example: 2 })
  @IsInt()
  @Min(1)
  @Max(1000)
  quantity!: number;
}

/** Lines to buy; without `items` the caller's cart is checked out. Prices are the server's. */
export class CreateOrderDto {
  @ApiPropertyOptional({
    type: [OrderItemInputDto],
    minItems: 1,
    maxItems: MAX_ORDER_LINES,
    description: 'Omitted (not null): the cart is checked out. Each product once.',
  })
  @Omittable()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_ORDER_LINES)
  @IsObject({ each: true }) // ValidateNested steps into an inner array ([[…]]) as if it were a line
  @ValidateNested({ each: true })
  @Type(() => OrderItemInputDto)
  items?: OrderItemInputDto[];
}
