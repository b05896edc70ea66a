import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { RequirePermission } from '../auth/require-permission.decorator';
import { AdminListOrdersDto } from './dto/list-orders.dto';
import { AdminOrderDetailDto, OrderDetailDto, OrderPageDto } from './dto/order.response';
import { OrdersService } from './orders.service';

@ApiTags('admin')
@Controller('v1/admin/orders')
export class AdminOrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Get()
  @RequirePermission('orders:read_all')
  @ApiOperation({
    operationId: 'listAllOrders',
    summary: "Every customer's orders (permission `orders:read_all`)",
    description:
      'Cursor-paginated, newest first, optionally of one `status`. A page holds up to `limit` orders and at most 1,000 order lines in all: ' +
      'one cut short by lines has fewer orders and a `nextCursor`.',
  })
  @ApiOkResponse({ type: OrderPageDto })
  list(@Query() query: AdminListOrdersDto) {
    return this.orders.listAll(query);
  }

  @Get(':id')
  @RequirePermission('orders:read_all')
  @ApiOperation({
    operationId: 'getAnyOrder',
    summary:
      "Any customer's order, with its payment, refunds, disputes and history (permission `orders:read_all`)",
    description:
      'As a customer sees their own order, for any order, and the disputes of its payment (a dispute open or lost ' +
      'holds its fulfilment). Its refunds are listed in every status — ' +
      'one the payment provider failed after it was answered `pending` included (the customer was not ' +
      'refunded: it is also raised in the logs and `requested_refunds_failed_total`).',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiOkResponse({ type: AdminOrderDetailDto })
  @ApiProblems([404, '`ORDER_NOT_FOUND`'])
  get(@Param('id', new UuidParamPipe()) id: string) {
    return this.orders.getAny(id);
  }

  @Post(':id/fulfil')
  @HttpCode(200)
  @RequirePermission('orders:fulfil')
  @ApiOperation({
    operationId: 'fulfilOrder',
    summary: 'Mark an order fulfilled (permission `orders:fulfil`)',
    description:
      'A confirmed order becomes `FULFILLED`; fulfilling a fulfilled order changes nothing, also ' +
      'once a refund has moved it on (the order is answered as it is, `REFUNDED` or ' +
      '`PARTIALLY_REFUNDED`). ' +
      'Refused (409) while refunds pending at the payment provider would return the whole total, ' +
      "and while the customer's bank disputes the payment (a dispute open or lost: see `disputes` in " +
      '`GET /v1/admin/orders/{id}`).',
  })
  @ApiUuidParam('id', 'Order id')
  @ApiOkResponse({ type: OrderDetailDto })
  @ApiProblems([404, '`ORDER_NOT_FOUND`'], [409, '`ORDER_NOT_FULFILLABLE`'])
  fulfil(@CurrentPrincipal() me: Principal, @Param('id', new UuidParamPipe()) id: string) {
    return this.orders.fulfil(me, id);
  }
}
