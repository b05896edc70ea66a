import { Controller, Get, Header, Ip, Param, Query } from '@nestjs/common';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { RequestUrl } from '../common/http/request-url.decorator';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { Public } from '../common/http/public.decorator';
import { CatalogService } from './catalog.service';
import { payerOf } from './build-budget';
import { CategoryListDto, ListProductsDto, ProductDto, ProductPageDto } from './dto/catalog.dto';

const JSON_TYPE = 'application/json; charset=utf-8';

/** Public catalog reads; bodies are ready JSON from the cache (no re-serialization). */
@ApiTags('catalog')
@Public()
@Controller('v1')
export class CatalogController {
  constructor(private readonly catalog: CatalogService) {}

  @Get('products')
  @Header('Content-Type', JSON_TYPE)
  @ApiOperation({
    operationId: 'listProducts',
    summary: 'List active products',
    description:
      'A cursor-paginated page of active products, optionally in one category (`categoryId`) ' +
      'or matching a full-text search (`q`), in the chosen `sort` order. Pass `nextCursor` as ' +
      '`cursor` for the next page; `null` means the last page.',
  })
  @ApiOkResponse({ type: ProductPageDto })
  list(
    @Query() query: ListProductsDto,
    @RequestUrl() url: string,
    @Ip() ip: string,
  ): Promise<string> {
    return this.catalog.list(query, url, payerOf(ip));
  }

  @Get('products/:id')
  @Header('Content-Type', JSON_TYPE)
  @ApiOperation({
    operationId: 'getProduct',
    summary: 'One product with its description and images',
    description: 'An inactive (deactivated) product is a 404 like an unknown one.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: ProductDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'])
  product(
    @Param('id', new UuidParamPipe()) id: string,
    @RequestUrl() url: string,
  ): Promise<string> {
    return this.catalog.product(id, url);
  }

  @Get('categories')
  @Header('Content-Type', JSON_TYPE)
  @ApiOperation({
    operationId: 'listCategories',
    summary: 'List categories',
    description: 'Every category, for navigation and for `categoryId` filters.',
  })
  @ApiOkResponse({ type: CategoryListDto })
  categories(@RequestUrl() url: string): Promise<string> {
    return this.catalog.categories(url);
  }
}
