import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Post, Query, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiHeader,
  ApiOkResponse,
  ApiTags,
} from '@nestjs/swagger';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RateLimit } from '../auth/rate-limit.decorator';
import { PageQueryDto } from '../common/pagination/page-query.dto';
import { RequireIdempotencyKey } from '../idempotency/idempotency.decorator';
import { CreateOrderDto } from './dto/create-order.dto';
import { OrderDetailDto, OrderDto, OrderPageDto } from './dto/order.response';
import { CheckoutSoldOutGuard } from './checkout-sold-out.guard';
import { CheckoutService } from './checkout.service';
import { OrdersService } from './orders.service';

const IDEMPOTENCY_HEADER_DOC = {
  name: 'Idempotency-Key',
  required: true,
  description: '1..255 printable ASCII; replays the first response for 24 h',
};

@ApiTags('orders')
@ApiBearerAuth('bearer')
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
  @ApiHeader(IDEMPOTENCY_HEADER_DOC)
  @ApiCreatedResponse({ type: OrderDto })
  @ApiConflictResponse({ description: 'INSUFFICIENT_STOCK, PRODUCT_UNAVAILABLE or PURCHASE_LIMIT_EXCEEDED' })
  create(@CurrentPrincipal() me: Principal, @Body() dto: CreateOrderDto): Promise<OrderDto> {
    return this.checkout.create(me, dto);
  }

  @Get()
  @ApiOkResponse({ type: OrderPageDto })
  list(@CurrentPrincipal() me: Principal, @Query() query: PageQueryDto) {
    return this.orders.list(me, query);
  }

  @Get(':id')
  @ApiOkResponse({ type: OrderDetailDto })
  get(@CurrentPrincipal() me: Principal, @Param('id', new ParseUUIDPipe()) id: string) {
    return this.orders.get(me, id);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @RequireIdempotencyKey()
  @ApiHeader(IDEMPOTENCY_HEADER_DOC)
  @ApiOkResponse({ type: OrderDetailDto })
  @ApiConflictResponse({ description: 'ORDER_NOT_CANCELLABLE' })
  cancel(@CurrentPrincipal() me: Principal, @Param('id', new ParseUUIDPipe()) id: string) {
    return this.orders.cancel(me, id);
  }
}
