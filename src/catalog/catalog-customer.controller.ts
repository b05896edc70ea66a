import { Body, Controller, Get, Headers, HttpCode, Param, ParseUUIDPipe, Post, Query, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { RawBodyRequest } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { Public } from '../common/http/public.decorator';
import { PageQueryDto } from '../common/pagination/page-query.dto';
import { CreateReviewDto, ProductListDto, ReviewDto, ReviewPageDto } from './dto/catalog.dto';
import { ImagesService } from './images.service';
import { RecommendationsService } from './recommendations.service';
import { ReviewsService } from './reviews.service';

@ApiTags('catalog')
@Controller('v1')
export class CatalogCustomerController {
  constructor(
    private readonly reviews: ReviewsService,
    private readonly recommendations: RecommendationsService,
  ) {}

  @Public()
  @Get('products/:id/reviews')
  @ApiOkResponse({ type: ReviewPageDto })
  listReviews(@Param('id', new ParseUUIDPipe()) id: string, @Query() query: PageQueryDto) {
    return this.reviews.list(id, query);
  }

  @Post('products/:id/reviews')
  @ApiBearerAuth('bearer')
  @ApiCreatedResponse({ type: ReviewDto })
  review(
    @CurrentPrincipal() me: Principal,
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body() dto: CreateReviewDto,
  ): Promise<ReviewDto> {
    return this.reviews.create(me, id, dto);
  }

  @Public()
  @Get('products/:id/also-bought')
  @ApiOkResponse({ type: ProductListDto })
  alsoBought(@Param('id', new ParseUUIDPipe()) id: string): Promise<ProductListDto> {
    return this.recommendations.alsoBought(id);
  }

  @Get('me/recommendations')
  @ApiBearerAuth('bearer')
  @ApiOkResponse({ type: ProductListDto })
  forMe(@CurrentPrincipal() me: Principal): Promise<ProductListDto> {
    return this.recommendations.forCustomer(me);
  }
}

/**
 * Object-storage upload notifications: S3 event notifications (`Records[].s3.object.key`) from
 * the store's webhook target, authenticated with `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>`.
 */
@ApiTags('webhooks')
@Public()
@Controller('v1/webhooks')
export class StorageWebhookController {
  constructor(private readonly images: ImagesService) {}

  @Post('storage')
  @HttpCode(204)
  uploaded(
    @Req() req: RawBodyRequest<FastifyRequest>,
    @Headers('authorization') authorization: string | undefined,
  ): Promise<void> {
    return this.images.uploaded(req.rawBody, authorization);
  }
}
