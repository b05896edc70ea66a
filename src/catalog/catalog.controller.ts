import { Controller, Get, Header, Param, ParseUUIDPipe, Query } from '@nestjs/common';
import { RequestUrl } from '../common/http/request-url.decorator';
import { ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../common/http/public.decorator';
import { CatalogService } from './catalog.service';
import { ListProductsDto, ProductDto, ProductPageDto } from './dto/catalog.dto';

const JSON_TYPE = 'application/json; charset=utf-8';

/** Public catalog reads; bodies are ready JSON from the cache (no re-serialization). */
@ApiTags('catalog')
@Public()
@Controller('v1')
export class CatalogController {
  constructor(private readonly catalog: CatalogService) {}

  @Get('products')
  @Header('Content-Type', JSON_TYPE)
  @ApiOkResponse({ type: ProductPageDto })
  list(@Query() query: ListProductsDto, @RequestUrl() url: string): Promise<string> {
    return this.catalog.list(query, url);
  }

  @Get('products/:id')
  @Header('Content-Type', JSON_TYPE)
  @ApiOkResponse({ type: ProductDto })
  product(@Param('id', new ParseUUIDPipe()) id: string, @RequestUrl() url: string): Promise<string> {
    return this.catalog.product(id, url);
  }

  @Get('categories')
  @Header('Content-Type', JSON_TYPE)
  categories(@RequestUrl() url: string): Promise<string> {
    return this.catalog.categories(url);
  }
}
