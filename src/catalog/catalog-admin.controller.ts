import { Body, Controller, Delete, HttpCode, Param, Patch, Post } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { RequirePermission } from '../auth/require-permission.decorator';
import { CatalogAdminService } from './catalog-admin.service';
import { ImagesService, MAX_IMAGES_PER_PRODUCT } from './images.service';
import {
  CategoryDto,
  CreateCategoryDto,
  CreateImageUploadDto,
  ImageUploadDto,
  CreateProductDto,
  ProductDto,
  UpdateProductDto,
} from './dto/catalog.dto';

@ApiTags('admin')
@Controller('v1/admin')
export class CatalogAdminController {
  constructor(
    private readonly admin: CatalogAdminService,
    private readonly images: ImagesService,
  ) {}

  @Post('products')
  @RequirePermission('catalog:write')
  @ApiOperation({
    operationId: 'createProduct',
    summary: 'Create a product (permission `catalog:write`)',
    description:
      'Creates an active product with its initial stock (ledgered). The price is in the ' +
      "shop's currency, in integer minor units.",
  })
  @ApiCreatedResponse({ type: ProductDto })
  @ApiProblems([404, '`CATEGORY_NOT_FOUND`'], [409, '`SKU_TAKEN`'])
  create(@CurrentPrincipal() me: Principal, @Body() dto: CreateProductDto): Promise<ProductDto> {
    return this.admin.createProduct(me, dto);
  }

  @Patch('products/:id')
  @RequirePermission('catalog:write')
  @ApiOperation({
    operationId: 'updateProduct',
    summary: 'Update a product (permission `catalog:write`)',
    description:
      'Changes the fields sent; orders already placed keep the price they were placed at.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: ProductDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND` or `CATEGORY_NOT_FOUND`'])
  update(
    @Param('id', new UuidParamPipe()) id: string,
    @Body() dto: UpdateProductDto,
  ): Promise<ProductDto> {
    return this.admin.updateProduct(id, dto);
  }

  @Delete('products/:id')
  @HttpCode(204)
  @RequirePermission('catalog:write')
  @ApiOperation({
    operationId: 'deactivateProduct',
    summary: 'Deactivate a product (permission `catalog:write`)',
    description: 'The product leaves the catalog; order history keeps its snapshot.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiNoContentResponse({ description: 'Deactivated' })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'])
  remove(@Param('id', new UuidParamPipe()) id: string): Promise<void> {
    return this.admin.deactivate(id);
  }

  @Post('categories')
  @RequirePermission('catalog:write')
  @ApiOperation({
    operationId: 'createCategory',
    summary: 'Create a category (permission `catalog:write`)',
    description: 'The slug is unique.',
  })
  @ApiCreatedResponse({ type: CategoryDto })
  @ApiProblems([409, '`SLUG_TAKEN`'])
  createCategory(@Body() dto: CreateCategoryDto): Promise<CategoryDto> {
    return this.admin.createCategory(dto);
  }

  @Post('products/:id/images')
  @RequirePermission('catalog:write')
  @ApiOperation({
    operationId: 'createImageUpload',
    summary: 'Start a product image upload (permission `catalog:write`)',
    description:
      'Returns a pre-signed URL the client uploads the image to directly, before `expiresAt`. ' +
      'The image is shown once the object store reports the upload complete.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiCreatedResponse({ type: ImageUploadDto })
  @ApiProblems(
    [404, '`PRODUCT_NOT_FOUND`'],
    [
      409,
      `\`CONFLICT\`: the product has ${MAX_IMAGES_PER_PRODUCT} images already (ready, or uploads started and not yet removed)`,
    ],
  )
  createImage(
    @Param('id', new UuidParamPipe()) id: string,
    @Body() dto: CreateImageUploadDto,
  ): Promise<ImageUploadDto> {
    return this.images.createUpload(id, dto);
  }
}
