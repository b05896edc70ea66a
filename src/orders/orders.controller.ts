import { Body, Controller, Get, HttpCode, Param, Post, Query, UseGuards } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { OpeningReads } from '../database/opening-reads';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RateLimit } from '../common/throttling/rate-limit.decorator';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { PageQueryDto } from '../common/pagination/page-query.dto';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { CreateOrderDto } from './dto/create-order.dto';
import { OrderDetailDto, OrderDto, OrderPageDto } from './dto/order.response';
import { CheckoutSoldOutGuard } from './checkout-sold-out.guard';
import { CheckoutService, checkoutOpeningReads } from './checkout.service';
import { OrdersService } from './orders.service';

@ApiTags('orders')
@Controller('v1/orders')
export class OrdersController {
  constructor(
    private readonly orders: OrdersService,
    private readonly checkout: CheckoutService,
  ) {}

  @Post()
  @RequireIdempotencyKey()
  @RateLimit('order-create')
  @UseGuards(CheckoutSoldOutGuard)
  @OpeningReads(checkoutOpeningReads)
  @ApiOperation({
    operationId: 'createOrder',
    summary: 'Place an order (reserves stock)',
    description:
      'Orders the given lines, or checks out the cart when `items` is omitted. Prices are the ' +
      "server's, snapshotted into the order. Stock is reserved until `reservationExpiresAt`; " +
      'an order not paid by then is cancelled (`RESERVATION_EXPIRED`). Requires an Idempotency-Key.',
  })
  @ApiCreatedResponse({ type: OrderDto })
  @ApiProblems(
    [400, '`VALIDATION_FAILED` (e.g. a duplicate line), `ORDER_EMPTY` or `BAD_REQUEST`'],
    [
      409,
      '`INSUFFICIENT_STOCK` (with `products`), `PRODUCT_UNAVAILABLE`, `PURCHASE_LIMIT_EXCEEDED` (with `limits`) or `ORDER_NOT_PAYABLE` (a total under `ORDER_MINIMUM_AMOUNT`, the smallest charge, or over `ORDER_MAXIMUM_AMOUNT`, the largest)',
    ],
    [
      429,
      "`RATE_LIMITED`: retry after `Retry-After` seconds — the `order-create` throttle (30 a minute), or the day's " +
        'allowance of abandoned unpaid orders (policy `abandoned-orders` in `RateLimit-Policy`; `Retry-After` up to 24 h: ' +
        "not a moment's throttle, tell the customer)",
    ],
  )
  // a missing body is valid (API.md: `{...?}`), so the document must not require one
  @ApiBody({ type: CreateOrderDto, required: false })
  create(@CurrentPrincipal() me: Principal, @Body() dto: CreateOrderDto): Promise<OrderDto> {
    return this.checkout.create(me, dto);
  }

  @Get()
  @ApiOperation({
    operationId: 'listOrders',
    summary: "The signed-in customer's orders",
    description:
      'Cursor-paginated, newest first. A page holds up to `limit` orders and at most 1,000 order lines in all: ' +
      'one cut short by lines has fewer orders and a `nextCursor`.',
  })
  @ApiOkResponse({ type: OrderPageDto })
  list(@CurrentPrincipal() me: Principal, @Query() query: PageQueryDto) {
    return this.orders.list(me, query);
  }

  @Get(':id')
  @ApiOperation({
    operationId: 'getOrder',
    summary: 'One of your orders, with its payment and history',
    description: "Another customer's order is a 404, as if it did not exist.",
  })
  @ApiUuidParam('id', 'Order id')
  @ApiOkResponse({ type: OrderDetailDto })
  @ApiProblems([404, '`ORDER_NOT_FOUND`'])
  get(@CurrentPrincipal() me: Principal, @Param('id', new UuidParamPipe()) id: string) {
    return this.orders.get(me, id);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @RequireIdempotencyKey()
  @ApiOperation({
    operationId: 'cancelOrder',
    summary: 'Cancel one of your orders',
    description:
      'Possible before the order is paid; its reserved stock is released once. Cancelling a ' +
      'cancelled order changes nothing. Requires an Idempotency-Key.',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiOkResponse({ type: OrderDetailDto })
  @ApiProblems([404, '`ORDER_NOT_FOUND`'], [409, '`ORDER_NOT_CANCELLABLE`'])
  cancel(@CurrentPrincipal() me: Principal, @Param('id', new UuidParamPipe()) id: string) {
    return this.orders.cancel(me, id);
  }
}
