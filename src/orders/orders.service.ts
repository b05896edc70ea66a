import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator } from '../common/ids';
import { decodeCursor, encodeCursor } from '../common/pagination/cursor';
import { Page, PageQueryDto } from '../common/pagination/page-query.dto';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { CartRepository } from '../cart/cart.repository';
import { StockReservationService } from '../inventory/stock-reservation.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { CreateOrderDto } from './dto/create-order.dto';
import { AdminListOrdersDto } from './dto/list-orders.dto';
import { OrderDetailDto, OrderDto, mapOrder, mapOrderDetail } from './dto/order.response';
import { OrderTransitionsService } from './order-transitions.service';
import { Order, OrderLine, OrderWithHistory } from './order.model';
import { OrderMetrics } from './order-metrics';
import { OrderRepository } from './order.repository';
import { priceLines } from './order-pricing';
import { ProductSnapshotRepository } from './product-snapshot.repository';

/** Customer and admin order use cases (one public method each). */
@Injectable()
export class OrdersService {
  constructor(
    private readonly orders: OrderRepository,
    private readonly products: ProductSnapshotRepository,
    private readonly carts: CartRepository,
    private readonly stock: StockReservationService,
    private readonly transitions: OrderTransitionsService,
    private readonly outbox: OutboxRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: OrderMetrics,
  ) {}

  /**
   * Creates an order from the given lines (or the cart, which is emptied in the same
   * transaction). After the price snapshot read, everything is written in the message that
   * carries the COMMIT: the order with its lines, history and outbox event, the idempotency
   * record (added by the interceptor), and last — to hold the hot inventory row locks for one
   * statement and the commit — the stock reservation.
   */
  async create(me: Principal, dto: CreateOrderDto): Promise<OrderDto> {
    const order = await this.tx.run(async (): Promise<Order> => {
      const requested = dto.items ?? (await this.carts.clear(me.userId));
      if (requested.length === 0) {
        throw new DomainError('ORDER_EMPTY', 'The order has no items and the cart is empty.');
      }
      const snapshots = await this.products.findByIds(requested.map((l) => l.productId));
      const lines: OrderLine[] = priceLines(requested, snapshots, this.config.currency);
      const now = this.clock.now();
      const reservationExpiresAt = new Date(now.getTime() + this.config.reservationTtlSeconds * 1000);
      const created: Order = {
        id: this.ids.uuid(),
        userId: me.userId,
        status: 'INVENTORY_RESERVED',
        cancellationReason: null,
        currency: this.config.currency,
        totalAmount: lines.reduce((sum, l) => sum + l.lineTotalAmount, 0),
        refundedAmount: 0,
        reservationExpiresAt,
        createdAt: now,
        updatedAt: now,
        items: lines,
      };
      const event = this.outbox.statement(
        'order.created',
        created.id,
        { orderId: created.id, reservationExpiresAt: reservationExpiresAt.toISOString() },
        OrderRepository.INSERT_PARAMS,
      );
      this.orders.insertOnCommit(
        {
          ...created,
          reservationExpiresAt,
          history: [
            { from: null, to: 'CREATED', reason: null },
            { from: 'CREATED', to: 'INVENTORY_RESERVED', reason: null },
          ],
          actor: `user:${me.userId}`,
        },
        event,
      );
      // The hot inventory row locks are taken last of all: in the message that carries the
      // COMMIT, after the idempotency record the request writes — held for one statement and
      // the commit, with no round trip in between.
      this.stock.reserveOnCommit(created.id, lines);
      this.metrics.orderCreated();
      return created;
    });
    // Answer from what was written: no re-read while the reservation's row locks are held.
    return mapOrder(order);
  }

  async list(me: Principal, query: PageQueryDto): Promise<Page<OrderDto>> {
    return this.page({ userId: me.userId }, query);
  }

  async listAll(query: AdminListOrdersDto): Promise<Page<OrderDto>> {
    return this.page({ status: query.status }, query);
  }

  /** Another customer's order is a 404: its existence is never revealed. */
  async get(me: Principal, id: string): Promise<OrderDetailDto> {
    const order = await this.orders.findById(id);
    if (!order || order.userId !== me.userId) {
      throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
    }
    return this.detail(order);
  }

  /** Cancels before PAID and releases stock once; cancelling a cancelled order is a no-op. */
  async cancel(me: Principal, id: string): Promise<OrderDetailDto> {
    return this.tx.run(async () => {
      await this.get(me, id);
      await this.transitions.cancel(id, 'CUSTOMER_REQUESTED', `user:${me.userId}`);
      const order = await this.mustFind(id);
      if (order.status !== 'CANCELLED') {
        throw new DomainError('ORDER_NOT_CANCELLABLE', `An order in ${order.status} cannot be cancelled.`);
      }
      return this.detail(order);
    });
  }

  /** CONFIRMED → FULFILLED; repeating it is a no-op. */
  async fulfil(actor: Principal, id: string): Promise<OrderDetailDto> {
    return this.tx.run(async () => {
      await this.transitions.fulfil(id, `user:${actor.userId}`);
      const order = await this.mustFind(id);
      if (order.status !== 'FULFILLED') {
        throw new DomainError('ORDER_NOT_FULFILLABLE', `An order in ${order.status} cannot be fulfilled.`);
      }
      return this.detail(order);
    });
  }

  private async page(
    filter: { userId?: string; status?: AdminListOrdersDto['status'] },
    query: PageQueryDto,
  ): Promise<Page<OrderDto>> {
    const after = decodeCursor<{ c: string; i: string }>(query.cursor, { c: 'string', i: 'string' });
    const rows: Order[] = await this.orders.page(
      filter,
      query.limit + 1,
      after ? { createdAt: new Date(after.c), id: after.i } : null,
    );
    const items = rows.slice(0, query.limit);
    const last = items[items.length - 1];
    return {
      items: items.map(mapOrder),
      nextCursor:
        rows.length > query.limit && last
          ? encodeCursor({ c: last.createdAt.toISOString(), i: last.id })
          : null,
    };
  }

  private async detail(order: OrderWithHistory): Promise<OrderDetailDto> {
    return mapOrderDetail(order, await this.orders.findPaymentSummary(order.id));
  }

  private async mustFind(id: string) {
    const order = await this.orders.findById(id);
    if (!order) throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
    return order;
  }
}
