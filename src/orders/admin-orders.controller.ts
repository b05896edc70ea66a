import { Controller, Get, HttpCode, Param, ParseUUIDPipe, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { AdminListOrdersDto } from './dto/list-orders.dto';
import { OrderDetailDto, OrderPageDto } from './dto/order.response';
import { OrdersService } from './orders.service';

@ApiTags('admin')
@ApiBearerAuth('bearer')
@Controller('v1/admin/orders')
export class AdminOrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Get()
  @RequirePermission('orders:read_all')
  @ApiOkResponse({ type: OrderPageDto })
  list(@Query() query: AdminListOrdersDto) {
    return this.orders.listAll(query);
  }

  @Post(':id/fulfil')
  @HttpCode(200)
  @RequirePermission('orders:fulfil')
  @ApiOkResponse({ type: OrderDetailDto })
  fulfil(@CurrentPrincipal() me: Principal, @Param('id', new ParseUUIDPipe()) id: string) {
    return this.orders.fulfil(me, id);
  }
}
