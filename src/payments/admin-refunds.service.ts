import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { APP_CONFIG, AppConfig } from '../config/config';
import { CreateRefundDto, RefundDto, mapRefund } from './dto/refund.dto';
import { RefundsService } from './refunds.service';

/** The admin refund use case: checks the request, then the refund steps (RefundsService). */
@Injectable()
export class AdminRefundsService {
  constructor(
    private readonly refunds: RefundsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async refund(actor: Principal, orderId: string, dto: CreateRefundDto, idempotencyKey: string): Promise<RefundDto> {
    if (dto.amount && dto.amount.currency !== this.config.currency) {
      throw new DomainError('VALIDATION_FAILED', `Orders are in ${this.config.currency}.`, {
        errors: [{ field: 'amount.currency', message: `must be ${this.config.currency}` }],
      });
    }
    const refund = await this.refunds.request({
      orderId,
      amount: dto.amount?.amount,
      actor: `user:${actor.userId}`,
      idempotencyKey,
    });
    return mapRefund(refund);
  }
}
