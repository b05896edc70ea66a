import { Body, Controller, Headers, HttpCode, Param, ParseUUIDPipe, Post, Req } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import { ApiCreatedResponse, ApiExcludeController, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { IsIn } from 'class-validator';
import type { FastifyRequest } from 'fastify';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { Public } from '../common/http/public.decorator';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { IDEMPOTENCY_HEADER } from '../idempotency/idempotency-key';
import { PaymentIntentDto, WebhookAckDto } from './dto/payment.dto';
import { CreateRefundDto, RefundDto } from './dto/refund.dto';
import { AdminRefundsService } from './admin-refunds.service';
import { DevPaymentsService } from './dev-payments.service';
import { PaymentsService } from './payments.service';
import { WebhooksService } from './webhooks.service';

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
  @ApiProblems([404, '`ORDER_NOT_FOUND`'], [409, '`ORDER_NOT_PAYABLE`'])
  start(@CurrentPrincipal() me: Principal, @Param('id', new ParseUUIDPipe()) id: string): Promise<PaymentIntentDto> {
    return this.payments.start(me, id);
  }
}

@ApiTags('admin')
@Controller('v1/admin/orders')
export class AdminRefundsController {
  constructor(private readonly refunds: AdminRefundsService) {}

  /** Full or partial; never more than captured minus already refunded. */
  @Post(':id/refunds')
  @RequirePermission('orders:refund')
  @RequireIdempotencyKey({ transactional: false })
  @ApiOperation({
    operationId: 'refundOrder',
    summary: 'Refund a paid order, fully or partly (permission `orders:refund`)',
    description:
      'Without `amount`, refunds all that remains refundable. A full refund makes the order ' +
      '`REFUNDED`, a partial one `PARTIALLY_REFUNDED`. Never more than captured minus already ' +
      "refunded. `status: pending` means the provider has not answered yet (retried " +
      'automatically). Requires an Idempotency-Key.',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiCreatedResponse({ type: RefundDto })
  @ApiProblems(
    [404, '`ORDER_NOT_FOUND`'],
    [409, '`ORDER_NOT_REFUNDABLE` or `REFUND_EXCEEDS_CAPTURED`'],
    [422, '`IDEMPOTENCY_KEY_REUSED`: the key was used with another body, route or order'],
    [502, '`PAYMENT_PROVIDER_REJECTED`: the provider refused the refund'],
  )
  refund(
    @CurrentPrincipal() me: Principal,
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body() dto: CreateRefundDto,
    @Headers(IDEMPOTENCY_HEADER) key: string,
  ): Promise<RefundDto> {
    return this.refunds.refund(me, id, dto, key);
  }
}

@ApiTags('webhooks')
@Public()
@Controller('v1/webhooks')
export class StripeWebhookController {
  constructor(private readonly webhooks: WebhooksService) {}

  /** Verified on the raw bytes; 200 only once the event is durably recorded. */
  @Post('stripe')
  @HttpCode(200)
  @ApiOperation({
    operationId: 'receiveStripeEvent',
    summary: 'Stripe webhook',
    description:
      'Verified on the raw body against `Stripe-Signature` (a bad or over 300 s old signature ' +
      'is refused before anything is parsed or stored); 200 once the event is durably ' +
      'recorded. A duplicate event id is a 200 with no further effect.',
  })
  @ApiHeader({ name: 'Stripe-Signature', required: true, description: "Stripe's `t=…,v1=…` signature of the raw body" })
  @ApiOkResponse({ type: WebhookAckDto })
  @ApiProblems([400, '`WEBHOOK_SIGNATURE_INVALID` or `BAD_REQUEST`'])
  receive(
    @Req() req: RawBodyRequest<FastifyRequest>,
    @Headers('stripe-signature') signature?: string,
  ): Promise<WebhookAckDto> {
    return this.webhooks.receive(req.rawBody, signature);
  }
}

export class ConfirmIntentDto {
  @IsIn(['succeeded', 'failed'])
  outcome!: 'succeeded' | 'failed';
}

/**
 * Development only (never mounted in production): settle a simulated intent as a payment app
 * would. Not in the OpenAPI document, which describes what every deployment serves.
 */
@ApiExcludeController()
@Controller('v1/dev/payment-intents')
export class DevPaymentsController {
  constructor(private readonly dev: DevPaymentsService) {}

  @Post(':id/confirm')
  @HttpCode(200)
  confirm(@CurrentPrincipal() me: Principal, @Param('id') id: string, @Body() dto: ConfirmIntentDto) {
    return this.dev.confirm(me, id, dto.outcome);
  }
}
