import { Body, Controller, Delete, Get, HttpCode, Param, Put } from '@nestjs/common';
import { ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { CartService } from './cart.service';
import { CartDto, SetCartQuantityDto } from './dto/cart.dto';

@ApiTags('cart')
@Controller('v1/cart')
export class CartController {
  constructor(private readonly cart: CartService) {}

  @Get()
  @ApiOperation({
    operationId: 'getCart',
    summary: "The signed-in customer's cart",
    description: 'Lines with current prices and the total.',
  })
  @ApiOkResponse({ type: CartDto })
  get(@CurrentPrincipal() me: Principal): Promise<CartDto> {
    return this.cart.get(me.userId);
  }

  @Put('items/:productId')
  @ApiOperation({
    operationId: 'setCartItemQuantity',
    summary: "Set a product's quantity in the cart",
    description:
      'Sets (not adds) the quantity of the line; 0 removes it. Returns the whole cart. A cart holds at most ' +
      '100 products (it is checked out as one order): adding one more is a 400.',
  })
  @ApiUuidParam('productId', 'Product id')
  @ApiOkResponse({ type: CartDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'])
  setQuantity(
    @CurrentPrincipal() me: Principal,
    @Param('productId', new UuidParamPipe()) productId: string,
    @Body() dto: SetCartQuantityDto,
  ): Promise<CartDto> {
    return this.cart.setQuantity(me.userId, productId, dto.quantity);
  }

  @Delete()
  @HttpCode(204)
  @ApiOperation({
    operationId: 'clearCart',
    summary: 'Empty the cart',
    description: 'Removes every line.',
  })
  @ApiNoContentResponse({ description: 'Emptied' })
  clear(@CurrentPrincipal() me: Principal): Promise<void> {
    return this.cart.clear(me.userId);
  }
}
