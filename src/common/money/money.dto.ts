import { ApiProperty } from '@nestjs/swagger';

/** An amount of money on the wire: integer minor units and an ISO 4217 code. */
export class MoneyDto {
  @ApiProperty({ type: 'integer', description: 'Integer minor units', example: 24900 })
  amount!: number;
  @ApiProperty({ example: 'INR', description: 'ISO 4217' })
  currency!: string;
}
