import { Controller, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import { ApiBody, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems } from '../common/http/api-problems';
import { Public } from '../common/http/public.decorator';
import { RateLimit } from '../common/throttling/rate-limit.decorator';
import { WebhookAckDto } from './dto/payment.dto';
import { StripeSignatureGuard, StripeWebhookRequest } from './stripe-signature.guard';
import { WebhooksService } from './webhooks.service';

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
  @ApiHeader({
    name: 'Stripe-Signature',
    required: true,
    description: "Stripe's `t=…,v1=…` signature of the raw body",
  })
  @ApiBody({
    required: true,
    description:
      'A Stripe event object (`{id, type, data: {object}}`), JSON, exactly as Stripe signed it',
    schema: {
      type: 'object',
      additionalProperties: true,
      properties: {
        id: { type: 'string', example: 'evt_1QabcXYZ' },
        type: { type: 'string', example: 'payment_intent.succeeded' },
        data: { type: 'object', additionalProperties: true },
      },
      required: ['id', 'type', 'data'],
    },
  })
  @ApiOkResponse({ type: WebhookAckDto })
  @ApiProblems([
    400,
    '`WEBHOOK_SIGNATURE_INVALID`, `BAD_REQUEST` (no JSON), or `VALIDATION_FAILED` (a signed body that is no event: no `evt_…` id or no type)',
  ])
  @RateLimit('webhook')
  @UseGuards(StripeSignatureGuard)
  receive(@Req() req: StripeWebhookRequest): Promise<WebhookAckDto> {
    return this.webhooks.receive(req.stripeEvent!);
  }
}
