import { ApiExtraModels, ApiProperty, ApiPropertyOptional, getSchemaPath } from '@nestjs/swagger';
import { CANCELLATION_REASONS, ORDER_STATUSES } from '../order-state-machine';
import { Order, OrderWithHistory, PaymentSummary } from '../order.model';
import { MoneyDto } from '../../common/money/money.dto';

export class OrderItemDto {
  @ApiProperty({ format: 'uuid' }) productId!: string;
  @ApiProperty() sku!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ type: 'integer', minimum: 1 }) quantity!: number;
  @ApiProperty({ type: MoneyDto }) unitPrice!: MoneyDto;
  @ApiProperty({ type: MoneyDto }) lineTotal!: MoneyDto;
}

export class StatusChangeDto {
  // (OpenAPI 3.0: `nullable` lets null through an enum only when the enum lists it)
  @ApiProperty({
    type: String,
    enum: [...ORDER_STATUSES, null] as unknown as string[],
    nullable: true,
    description: 'null for the first entry',
  })
  from!: string | null;
  @ApiProperty({ enum: ORDER_STATUSES }) to!: string;
  @ApiProperty({ type: String, nullable: true }) reason!: string | null;
  @ApiProperty({ format: 'date-time' }) at!: string;
}

export class OrderDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ enum: ORDER_STATUSES }) status!: string;
  @ApiPropertyOptional({ enum: CANCELLATION_REASONS }) cancellationReason?: string;
  @ApiProperty({ type: [OrderItemDto] }) items!: OrderItemDto[];
  @ApiProperty({ type: MoneyDto }) total!: MoneyDto;
  @ApiProperty({
    type: MoneyDto,
    description:
      "Refunded of the order's sale (refunds of a paid order; at most `total`). A payment that succeeded after " +
      'the order was cancelled is refunded in full automatically: that refund shows in the payment ' +
      '(`payment.refunded`, `payment.refunds` with reason `paid_after_cancel`), not here',
  })
  refunded!: MoneyDto;
  @ApiProperty({
    type: String,
    format: 'date-time',
    nullable: true,
    description:
      'The reservation deadline set at checkout, kept on the order afterwards: it binds only while the ' +
      'status is INVENTORY_RESERVED or PAYMENT_PENDING (unpaid by then, the order is released); ' +
      'in any other status it is history, not an offer to pay',
  })
  reservationExpiresAt!: string | null;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time' }) updatedAt!: string;
}

export class RefundSummaryDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ type: MoneyDto }) amount!: MoneyDto;
  @ApiProperty({ enum: ['pending', 'succeeded', 'failed'] }) status!: string;
  @ApiProperty({ enum: ['requested', 'paid_after_cancel', 'external'] }) reason!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
}

export class PaymentSummaryDto {
  @ApiProperty({ enum: ['stripe', 'simulated'] }) provider!: string;
  @ApiProperty() paymentIntentId!: string;
  @ApiProperty({ description: "The provider's intent status as last seen" }) status!: string;
  @ApiProperty({ type: MoneyDto }) amount!: MoneyDto;
  @ApiProperty({ type: MoneyDto, description: 'Succeeded refunds' }) refunded!: MoneyDto;
  @ApiProperty({ type: [RefundSummaryDto] }) refunds!: RefundSummaryDto[];
}

@ApiExtraModels(PaymentSummaryDto)
export class OrderDetailDto extends OrderDto {
  // (OpenAPI 3.0: `nullable` beside an allOf/$ref lets no null through; a validator needs the
  // null as its own alternative)
  @ApiProperty({
    description: 'null until a payment is started',
    anyOf: [{ $ref: getSchemaPath(PaymentSummaryDto) }, { enum: [null] }],
  })
  payment!: PaymentSummaryDto | null;
  @ApiProperty({ type: [StatusChangeDto] }) history!: StatusChangeDto[];
}

export class DisputeSummaryDto {
  @ApiProperty({ description: "The payment provider's dispute id" }) disputeId!: string;
  @ApiProperty({
    description:
      "The provider's status (needs_response, under_review, won, lost, prevented, warning_…): open or lost, it holds the order's fulfilment",
  })
  status!: string;
  @ApiProperty({ type: MoneyDto, description: "What the customer's bank disputes" })
  amount!: MoneyDto;
  @ApiProperty({ type: String, nullable: true }) reason!: string | null;
  @ApiProperty({
    type: String,
    format: 'date-time',
    nullable: true,
    description:
      "The provider's deadline for our evidence (needs_response) or reply (warning_needs_response): unanswered by then, the dispute is lost. Null when none is known: the provider set none, or the dispute was recorded before deadlines were kept (one still open is read again from the provider within about 6 hours; a closed one keeps null)",
  })
  evidenceDueBy!: string | null;
  @ApiProperty({ format: 'date-time', description: 'When it was first reported' })
  openedAt!: string;
  @ApiProperty({ format: 'date-time', description: 'When its status last changed' })
  updatedAt!: string;
}

/** An order as staff and admins see it: as its customer does, and the disputes of its payment. */
export class AdminOrderDetailDto extends OrderDetailDto {
  @ApiProperty({ type: [DisputeSummaryDto], description: 'Oldest first; empty when none' })
  disputes!: DisputeSummaryDto[];
}

export class OrderPageDto {
  @ApiProperty({ type: [OrderDto] }) items!: OrderDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

const money = (amount: number, currency: string): MoneyDto => ({ amount, currency });

export function mapOrder(order: Order): OrderDto {
  return {
    id: order.id,
    status: order.status,
    ...(order.cancellationReason ? { cancellationReason: order.cancellationReason } : {}),
    items: order.items.map((i) => ({
      productId: i.productId,
      sku: i.sku,
      name: i.name,
      quantity: i.quantity,
      unitPrice: money(i.unitPriceAmount, order.currency),
      lineTotal: money(i.lineTotalAmount, order.currency),
    })),
    total: money(order.totalAmount, order.currency),
    refunded: money(order.refundedAmount, order.currency),
    reservationExpiresAt: order.reservationExpiresAt?.toISOString() ?? null,
    createdAt: order.createdAt.toISOString(),
    updatedAt: order.updatedAt.toISOString(),
  };
}

function mapPayment(p: PaymentSummary): PaymentSummaryDto {
  const currency = p.currency;
  return {
    provider: p.provider,
    paymentIntentId: p.paymentIntentId,
    status: p.status,
    amount: money(p.amount, currency),
    refunded: money(p.refundedAmount, currency),
    refunds: p.refunds.map((r) => ({
      id: r.id,
      amount: money(r.amount, currency),
      status: r.status,
      reason: r.reason,
      createdAt: r.createdAt.toISOString(),
    })),
  };
}

export function mapOrderDetail(
  order: OrderWithHistory,
  payment: PaymentSummary | null,
): OrderDetailDto {
  return {
    ...mapOrder(order),
    payment: payment ? mapPayment(payment) : null,
    history: order.history.map((h) => ({
      from: h.from,
      to: h.to,
      reason: h.reason,
      at: h.at.toISOString(),
    })),
  };
}
