import { ApiProperty } from '@nestjs/swagger';
import { MoneyDto } from '../../common/money/money.dto';
import type { IntentStatus } from '../payment-gateway';

const INTENT_STATUSES: IntentStatus[] = [
  'requires_payment_method',
  'processing',
  'succeeded',
  'canceled',
];

/** What a client needs to complete a payment with the provider SDK (Stripe mobile / Stripe.js). */
export class PaymentIntentDto {
  @ApiProperty({ example: 'pi_3PqK2LFz0example' }) paymentIntentId!: string;
  @ApiProperty({
    description: "For the provider SDK's confirm call; never logged",
    example: 'pi_3PqK2LFz0example_secret_abc',
  })
  clientSecret!: string;
  @ApiProperty({
    enum: INTENT_STATUSES,
    description: "The provider's intent status when last seen",
  })
  status!: string;
  @ApiProperty({ type: MoneyDto }) amount!: MoneyDto;
}

export class WebhookAckDto {
  @ApiProperty({ enum: [true] }) received!: true;
  @ApiProperty({ description: 'The event id was already recorded: nothing further was done' })
  duplicate!: boolean;
}
