import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { CursorCodec } from '../common/pagination/cursor';
import { Page, PageQueryDto } from '../common/pagination/page-query.dto';
import { TransactionHost } from '../database/transaction-host';
import { PaymentReader } from '../payments/payment-reader';
import { AdminListOrdersDto } from './dto/list-orders.dto';
import {
  AdminOrderDetailDto,
  OrderDetailDto,
  OrderDto,
  mapOrder,
  mapOrderDetail,
} from './dto/order.response';
import { OrderTransitionsService } from './order-transitions.service';
import { OrderWithHistory } from './order.model';
import { OrderRepository } from './order.repository';

/** Customer and admin order use cases after checkout: reading, cancelling, fulfilling. */
@Injectable()
export class OrdersService {
  constructor(
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    private readonly tx: TransactionHost,
    private readonly payments: PaymentReader,
    private readonly cursors: CursorCodec,
  ) {}

  async list(me: Principal, query: PageQueryDto): Promise<Page<OrderDto>> {
    return this.page({ userId: me.userId }, query);
  }

  async listAll(query: AdminListOrdersDto): Promise<Page<OrderDto>> {
    return this.page({ status: query.status }, query);
  }

  /**
   * Any customer's order, with its payment's disputes (an admin's view, `orders:read_all`): its
   * reads from one snapshot (TransactionHost#runSnapshot), as a customer's.
   */
  getAny(id: string): Promise<AdminOrderDetailDto> {
    return this.tx.runSnapshot(async () => {
      const order = await this.mustFind(id);
      const [detail, disputes] = await Promise.all([
        this.detail(order),
        this.payments.disputesOf(order.id),
      ]);
      return { ...detail, disputes };
    });
  }

  /**
   * Another customer's order is a 404: its existence is never revealed. The order and its
   * payment are read from one snapshot: a refund or fulfilment committing between the two reads
   * answered an order that contradicted its own payment.
   */
  get(me: Principal, id: string): Promise<OrderDetailDto> {
    return this.tx.runSnapshot(async () => {
      const order = await this.orders.findById(id);
      if (!order || order.userId !== me.userId) {
        throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
      }
      return this.detail(order);
    });
  }

  /** Cancels before PAID and releases stock once; cancelling a cancelled order is a no-op. */
  async cancel(me: Principal, id: string): Promise<OrderDetailDto> {
    return this.tx.run(async () => {
      await this.get(me, id);
      await this.transitions.cancel(id, 'CUSTOMER_REQUESTED', `user:${me.userId}`);
      const order = await this.mustFind(id);
      if (order.status !== 'CANCELLED') {
        throw new DomainError(
          'ORDER_NOT_CANCELLABLE',
          `An order in ${order.status} cannot be cancelled.`,
        );
      }
      return this.detail(order);
    });
  }

  /**
   * CONFIRMED → FULFILLED; repeating it is a no-op — also once a refund has moved the fulfilled
   * order on (a retry of a fulfilment whose answer was lost: the goods went; answered with the
   * order as it is, not 409).
   */
  async fulfil(actor: Principal, id: string): Promise<OrderDetailDto> {
    return this.tx.run(async () => {
      await this.transitions.fulfil(id, `user:${actor.userId}`);
      const order = await this.mustFind(id);
      const fulfilled = order.history.some((h) => h.to === 'FULFILLED');
      if (!fulfilled) {
        const dispute =
          order.status === 'CONFIRMED' ? await this.payments.holdingDispute(id) : null;
        throw new DomainError(
          'ORDER_NOT_FULFILLABLE',
          order.status !== 'CONFIRMED'
            ? `An order in ${order.status} cannot be fulfilled.`
            : dispute
              ? `The payment is disputed by the customer's bank (${dispute}): the order is not fulfilled while the dispute is open or lost.`
              : "Refunds pending at the payment provider would return this order's whole total: it is not fulfilled (it can be, should enough of them fail).",
        );
      }
      return this.detail(order);
    });
  }

  private async page(
    filter: { userId?: string; status?: AdminListOrdersDto['status'] },
    query: PageQueryDto,
  ): Promise<Page<OrderDto>> {
    // (a cursor is bound to its list: a customer's own orders, or all orders under one filter —
    // another list's paged from an arbitrary place in this one)
    const list = filter.userId
      ? `orders of ${filter.userId}`
      : `all orders, status ${filter.status ?? 'any'}`;
    const after = this.cursors.decode<{ c: string; i: string }>(
      query.cursor,
      { c: 'timestamp', i: 'uuid' },
      list,
      'list of orders',
    );
    const { orders: items, more } = await this.orders.page(
      filter,
      query.limit,
      after ? { createdAt: new Date(after.c), id: after.i } : null,
    );
    const last = items[items.length - 1];
    return {
      items: items.map(mapOrder),
      nextCursor:
        more && last
          ? this.cursors.encode({ c: last.createdAt.toISOString(), i: last.id }, list)
          : null,
    };
  }

  private async detail(order: OrderWithHistory): Promise<OrderDetailDto> {
    return mapOrderDetail(order, await this.payments.summaryOf(order.id));
  }

  private async mustFind(id: string) {
    const order = await this.orders.findById(id);
    if (!order) throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
    return order;
  }
}
