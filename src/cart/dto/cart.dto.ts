import { ApiProperty } from '@nestjs/swagger';
import { IsInt, Max, Min } from 'class-validator';
import { MoneyDto } from '../../common/money/money.dto';

export class SetCartQuantityDto {
  @ApiProperty({
    type: 'integer',
    minimum: 0,
    maximum: 1000,
    description:
      '0 removes the line. A quantity above the per-customer cap of units per product (PURCHASE_LIMIT_UNITS_PER_PRODUCT, 5 by default; 0 = off) is kept; checking the cart out then answers 409 PURCHASE_LIMIT_EXCEEDED',
    example: 2,
  })
  @IsInt()
  @Min(0)
  @Max(1000)
  quantity!: number;
}

export class CartItemDto {
  @ApiProperty({ format: 'uuid' }) productId!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ type: 'integer', minimum: 1 }) quantity!: number;
  @ApiProperty({ type: MoneyDto }) unitPrice!: MoneyDto;
  @ApiProperty({ type: MoneyDto }) lineTotal!: MoneyDto;
}

export class CartDto {
  @ApiProperty({ type: [CartItemDto] }) items!: CartItemDto[];
  @ApiProperty({ type: MoneyDto }) total!: MoneyDto;
}
