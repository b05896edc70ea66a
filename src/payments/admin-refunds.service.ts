import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { CreateRefundDto, RefundDto, mapRefund } from './dto/refund.dto';
import { RefundsService } from './refunds.service';

/** The admin refund use case: checks the request, then the refund steps (RefundsService). */
@Injectable()
export class AdminRefundsService {
  constructor(private readonly refunds: RefundsService) {}

  async refund(
    actor: Principal,
    orderId: string,
    dto: CreateRefundDto,
    idempotencyKey: string,
  ): Promise<RefundDto> {
    const refund = await this.refunds.request({
      orderId,
      amount: dto.amount?.amount,
      currency: dto.amount?.currency,
      actor: `user:${actor.userId}`,
      idempotencyKey,
    });
    return mapRefund(refund);
  }
}
