import { Body, Controller, Delete, HttpCode, Param, ParseUUIDPipe, Patch, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { RequirePermission } from '../auth/require-permission.decorator';
import { CatalogAdminService } from './catalog-admin.service';
import { ImagesService } from './images.service';
import {
  CategoryDto,
  CreateCategoryDto,
  CreateImageUploadDto,
  ImageUploadDto,
  CreateProductDto,
  ProductDto,
  StockAdjustmentDto,
  StockLevelDto,
  UpdateProductDto,
} from './dto/catalog.dto';

@ApiTags('admin')
@ApiBearerAuth('bearer')
@Controller('v1/admin')
export class CatalogAdminController {
  constructor(
    private readonly admin: CatalogAdminService,
    private readonly images: ImagesService,
  ) {}

  @Post('products')
  @RequirePermission('catalog:write')
  @ApiCreatedResponse({ type: ProductDto })
  create(@CurrentPrincipal() me: Principal, @Body() dto: CreateProductDto): Promise<ProductDto> {
    return this.admin.createProduct(me, dto);
  }

  @Patch('products/:id')
  @RequirePermission('catalog:write')
  @ApiOkResponse({ type: ProductDto })
  update(@Param('id', new ParseUUIDPipe()) id: string, @Body() dto: UpdateProductDto): Promise<ProductDto> {
    return this.admin.updateProduct(id, dto);
  }

  @Delete('products/:id')
  @HttpCode(204)
  @RequirePermission('catalog:write')
  @ApiNoContentResponse()
  remove(@Param('id', new ParseUUIDPipe()) id: string): Promise<void> {
    return this.admin.deactivate(id);
  }

  @Post('products/:id/stock-adjustments')
  @HttpCode(200)
  @RequirePermission('inventory:write')
  @ApiOkResponse({ type: StockLevelDto })
  adjust(
    @CurrentPrincipal() me: Principal,
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body() dto: StockAdjustmentDto,
  ): Promise<StockLevelDto> {
    return this.admin.adjustStock(me, id, dto);
  }

  @Post('categories')
  @RequirePermission('catalog:write')
  @ApiCreatedResponse({ type: CategoryDto })
  createCategory(@Body() dto: CreateCategoryDto): Promise<CategoryDto> {
    return this.admin.createCategory(dto);
  }

  @Post('products/:id/images')
  @RequirePermission('catalog:write')
  @ApiCreatedResponse({ type: ImageUploadDto })
  createImage(
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body() dto: CreateImageUploadDto,
  ): Promise<ImageUploadDto> {
    return this.images.createUpload(id, dto);
  }
}
