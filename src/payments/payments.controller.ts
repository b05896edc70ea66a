import { Body, Controller, Headers, HttpCode, Param, ParseUUIDPipe, Post, Req } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import { ApiBearerAuth, ApiConflictResponse, ApiCreatedResponse, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { IsIn } from 'class-validator';
import type { FastifyRequest } from 'fastify';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { Public } from '../common/http/public.decorator';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { IDEMPOTENCY_HEADER } from '../idempotency/idempotency-key';
import { CreateRefundDto, RefundDto } from './dto/refund.dto';
import { AdminRefundsService } from './admin-refunds.service';
import { DevPaymentsService } from './dev-payments.service';
import { PaymentsService } from './payments.service';
import { WebhooksService } from './webhooks.service';

@ApiTags('payments')
@ApiBearerAuth('bearer')
@Controller('v1/orders')
export class PaymentsController {
  constructor(private readonly payments: PaymentsService) {}

  @Post(':id/payment')
  @RequireIdempotencyKey({ transactional: false })
  @ApiHeader({ name: 'Idempotency-Key', required: true })
  @ApiCreatedResponse({ description: '{paymentIntentId, clientSecret, status, amount}' })
  start(@CurrentPrincipal() me: Principal, @Param('id', new ParseUUIDPipe()) id: string) {
    return this.payments.start(me, id);
  }
}

@ApiTags('admin')
@ApiBearerAuth('bearer')
@Controller('v1/admin/orders')
export class AdminRefundsController {
  constructor(private readonly refunds: AdminRefundsService) {}

  /** Full or partial; never more than captured minus already refunded. */
  @Post(':id/refunds')
  @RequirePermission('orders:refund')
  @RequireIdempotencyKey({ transactional: false })
  @ApiHeader({ name: 'Idempotency-Key', required: true })
  @ApiCreatedResponse({ type: RefundDto })
  @ApiConflictResponse({ description: 'ORDER_NOT_REFUNDABLE or REFUND_EXCEEDS_CAPTURED' })
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
  @ApiOkResponse({ description: '{received: true}' })
  receive(@Req() req: RawBodyRequest<FastifyRequest>, @Headers('stripe-signature') signature?: string) {
    return this.webhooks.receive(req.rawBody, signature);
  }
}

export class ConfirmIntentDto {
  @IsIn(['succeeded', 'failed'])
  outcome!: 'succeeded' | 'failed';
}

/** Development only (never mounted in production): settle a simulated intent as a payment app would. */
@ApiTags('development')
@ApiBearerAuth('bearer')
@Controller('v1/dev/payment-intents')
export class DevPaymentsController {
  constructor(private readonly dev: DevPaymentsService) {}

  @Post(':id/confirm')
  @HttpCode(200)
  confirm(@CurrentPrincipal() me: Principal, @Param('id') id: string, @Body() dto: ConfirmIntentDto) {
    return this.dev.confirm(me, id, dto.outcome);
  }
}
