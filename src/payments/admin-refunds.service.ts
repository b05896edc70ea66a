import { Inject, Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { APP_CONFIG, AppConfig, amountStepFor } from '../config/config';
import type { Principal } from '../auth/principal';
import { CreateRefundDto, RefundDto, mapRefund } from './dto/refund.dto';
import { RefundsService } from './refunds.service';

/** The admin refund use case: checks the request, then the refund steps (RefundsService). */
@Injectable()
export class AdminRefundsService {
  constructor(
    private readonly refunds: RefundsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async refund(
    actor: Principal,
    orderId: string,
    dto: CreateRefundDto,
    idempotencyKey: string,
  ): Promise<RefundDto> {
    // an amount the payment provider refuses in its currency (Stripe: a three-decimal currency's
    // last digit must be 0) is the request's fault, not a 502 after a recorded attempt — judged
    // in the currency asked, the order's (another is refused as such), not the shop's today
    const currency = dto.amount?.currency ?? '';
    const step = amountStepFor(currency, this.config.stripe.secretKey !== undefined);
    if (dto.amount && dto.amount.amount % step) {
      throw new DomainError(
        'VALIDATION_FAILED',
        `Amounts in ${currency} are multiples of ${step} minor units.`,
        { errors: [{ field: 'amount.amount', message: `must be a multiple of ${step}` }] },
      );
    }
    const refund = await this.refunds.request({
      orderId,
      amount: dto.amount?.amount,
      currency: dto.amount?.currency,
      actor: `user:${actor.userId}`,
      idempotencyKey,
      // the admin waits as a customer's payment start does: past it, the refund is answered
      // pending and its follow-up job settles it (a load balancer cut the SDK's ~25 s off, and
      // the admin clicked again)
      waitMs: this.config.stripe.startBudgetMs,
    });
    return mapRefund(refund);
  }
}
