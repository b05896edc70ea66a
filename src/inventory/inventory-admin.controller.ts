import { Body, Controller, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { StockAdjustmentDto, StockLevelDto } from './dto/inventory.dto';
import { InventoryService } from './inventory.service';

/** Stock administration (permission `inventory:write`). */
@ApiTags('admin')
@Controller('v1/admin')
export class InventoryAdminController {
  constructor(private readonly inventory: InventoryService) {}

  @Post('products/:id/stock-adjustments')
  @HttpCode(200)
  @RequirePermission('inventory:write')
  @ApiOperation({
    operationId: 'adjustStock',
    summary: 'Adjust on-hand stock (permission `inventory:write`)',
    description:
      'Adds (positive `delta`) or removes (negative) on-hand units, with a reason for the ' +
      'stock ledger. On-hand never falls below what open orders have reserved.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: StockLevelDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'], [409, '`STOCK_BELOW_RESERVED`'])
  adjust(
    @CurrentPrincipal() me: Principal,
    @Param('id', new UuidParamPipe()) id: string,
    @Body() dto: StockAdjustmentDto,
  ): Promise<StockLevelDto> {
    return this.inventory.adjustStock(me, id, dto);
  }
}
