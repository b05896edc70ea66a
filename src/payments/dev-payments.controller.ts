import { Body, Controller, HttpCode, Param, Post } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { DevPaymentsService } from './dev-payments.service';
import { ConfirmIntentDto } from './dto/confirm-intent.dto';

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
  confirm(
    @CurrentPrincipal() me: Principal,
    @Param('id') id: string,
    @Body() dto: ConfirmIntentDto,
  ) {
    return this.dev.confirm(me, id, dto.outcome);
  }
}
