import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { CartService } from './cart.service';
import { CartDto, SetCartQuantityDto } from './dto/cart.dto';

@ApiTags('cart')
@ApiBearerAuth('bearer')
@Controller('v1/cart')
export class CartController {
  constructor(private readonly cart: CartService) {}

  @Get()
  @ApiOkResponse({ type: CartDto })
  get(@CurrentPrincipal() me: Principal): Promise<CartDto> {
    return this.cart.get(me.userId);
  }

  @Put('items/:productId')
  @ApiOkResponse({ type: CartDto })
  setQuantity(
    @CurrentPrincipal() me: Principal,
    @Param('productId', new ParseUUIDPipe()) productId: string,
    @Body() dto: SetCartQuantityDto,
  ): Promise<CartDto> {
    return this.cart.setQuantity(me.userId, productId, dto.quantity);
  }

  @Delete()
  @HttpCode(204)
  @ApiNoContentResponse()
  clear(@CurrentPrincipal() me: Principal): Promise<void> {
    return this.cart.clear(me.userId);
  }
}
