import { Controller, Param, Post } from '@nestjs/common';
import { ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { PaymentIntentDto } from './dto/payment.dto';
import { PaymentsService } from './payments.service';

@ApiTags('payments')
@Controller('v1/orders')
export class PaymentsController {
  constructor(private readonly payments: PaymentsService) {}

  @Post(':id/payment')
  @RequireIdempotencyKey({ transactional: false })
  @ApiOperation({
    operationId: 'startPayment',
    summary: 'Start paying for one of your orders',
    description:
      "Creates the order's payment intent (once: calling again returns the same intent) and " +
      'moves the order to `PAYMENT_PENDING`. Complete the payment with the provider SDK and ' +
      '`clientSecret`; the order is confirmed when the provider reports success. Requires an ' +
      'Idempotency-Key.',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiCreatedResponse({ type: PaymentIntentDto })
  @ApiProblems(
    [404, '`ORDER_NOT_FOUND`'],
    [
      409,
      '`ORDER_NOT_PAYABLE`: cancelled, past its reservation deadline, a total the provider cannot charge, or a product of it taken off sale before its payment began (the order is then cancelled, PAYMENT_FAILED)',
    ],
    [
      502,
      '`PAYMENT_PROVIDER_REJECTED`: the provider refused to create the payment (e.g. no payment method enabled for the currency)',
    ],
  )
  start(
    @CurrentPrincipal() me: Principal,
    @Param('id', new UuidParamPipe()) id: string,
  ): Promise<PaymentIntentDto> {
    return this.payments.start(me, id);
  }
}
