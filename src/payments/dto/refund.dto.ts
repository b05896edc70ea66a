import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsObject, Max, Min, ValidateNested } from 'class-validator';
import { Omittable } from '../../common/http/omittable';
import { MoneyInputDto } from '../../catalog/dto/catalog.dto';
import { MoneyDto } from '../../common/money/money.dto';
import type { Refund } from '../refund.repository';

export class RefundAmountDto extends MoneyInputDto {
  // all of them: class-validator drops every inherited rule of a property the subclass decorates
  // up to what an order can total (prices up to MAX_MONEY_AMOUNT × 1000 units × 100 lines, kept
  // below 2^53): more than remains refundable is the refund's 409 REFUND_EXCEEDS_CAPTURED (API.md),
  // not a 400 for an amount a paid order can hold
  @ApiProperty({
    type: 'integer',
    description: 'Integer minor units, at least 1',
    example: 10000,
    minimum: 1,
    maximum: Number.MAX_SAFE_INTEGER,
  })
  @IsInt()
  @Min(1)
  @Max(Number.MAX_SAFE_INTEGER)
  declare amount: number;
}

export class CreateRefundDto {
  @ApiPropertyOptional({
    type: RefundAmountDto,
    description: 'Omitted: all that remains refundable. At least 1.',
    example: { amount: 10000, currency: 'INR' },
  })
  // omitted, not null: a client that sends `"amount": null` by mistake must not refund it all
  @Omittable()
  @IsObject()
  @ValidateNested()
  @Type(() => RefundAmountDto)
  amount?: RefundAmountDto;
}

export class RefundDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) orderId!: string;
  @ApiProperty({ type: MoneyDto }) amount!: MoneyDto;
  @ApiProperty({
    enum: ['pending', 'succeeded', 'failed'],
    description: 'pending: the provider has not answered yet; retried automatically',
  })
  status!: string;
  @ApiProperty({ enum: ['requested', 'paid_after_cancel', 'external'] }) reason!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
}

export function mapRefund(r: Refund): RefundDto {
  return {
    id: r.id,
    orderId: r.orderId,
    amount: { amount: r.amount, currency: r.currency },
    status: r.status,
    reason: r.reason,
    createdAt: r.createdAt.toISOString(),
  };
}
