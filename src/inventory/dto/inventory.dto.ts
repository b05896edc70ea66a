import { ApiProperty } from '@nestjs/swagger';
import { IsInt, IsString, Max, Min, NotEquals } from 'class-validator';
import { CharLength } from '../../common/http/char-length';
import { VisibleName } from '../../common/http/single-line';

export class StockAdjustmentDto {
  @ApiProperty({
    type: 'integer',
    description: 'Units added (positive) or removed (negative); not 0',
    minimum: -10_000_000,
    maximum: 10_000_000,
    not: { enum: [0] },
    example: 25,
  })
  @IsInt()
  @NotEquals(0)
  @Min(-10_000_000)
  @Max(10_000_000)
  delta!: number;

  @ApiProperty({
    example: 'Delivery from supplier',
    minLength: 1,
    maxLength: 500,
    description: 'Shows a letter or digit; no invisible characters (400)',
  })
  @IsString()
  @CharLength(1, 500)
  @VisibleName()
  reason!: string;
}

export class StockLevelDto {
  @ApiProperty({ type: 'integer' }) onHand!: number;
  @ApiProperty({ type: 'integer' }) reserved!: number;
  @ApiProperty({ type: 'integer', description: 'onHand - reserved' }) available!: number;
}
