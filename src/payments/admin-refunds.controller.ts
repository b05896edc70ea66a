import { Body, Controller, Headers, Param, Post } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { IDEMPOTENCY_HEADER } from '../idempotency/idempotency-key';
import { AdminRefundsService } from './admin-refunds.service';
import { CreateRefundDto, RefundDto } from './dto/refund.dto';

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
      'refunded. `status: pending` means the provider has not answered yet (retried ' +
      'automatically with the same key) or has accepted it as pending (its balance, an unsettled ' +
      'charge: it settles by itself, sometimes days later): never issue another refund for it. ' +
      'Requires an Idempotency-Key.',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiCreatedResponse({ type: RefundDto })
  @ApiProblems(
    [404, '`ORDER_NOT_FOUND`'],
    [409, '`ORDER_NOT_REFUNDABLE` or `REFUND_EXCEEDS_CAPTURED`'],
    [422, '`IDEMPOTENCY_KEY_REUSED`: the key was used with another body, route or order'],
    [502, '`PAYMENT_PROVIDER_REJECTED`: the provider refused the refund'],
  )
  // a missing body is valid (API.md: `{...?}`), so the document must not require one
  @ApiBody({ type: CreateRefundDto, required: false })
  refund(
    @CurrentPrincipal() me: Principal,
    @Param('id', new UuidParamPipe()) id: string,
    @Body() dto: CreateRefundDto,
    @Headers(IDEMPOTENCY_HEADER) key: string,
  ): Promise<RefundDto> {
    return this.refunds.refund(me, id, dto, key);
  }
}
