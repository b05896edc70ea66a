import { Body, Controller, Get, Headers, HttpCode, Param, ParseUUIDPipe, Post, Query, Req } from '@nestjs/common';
import { ApiCreatedResponse, ApiHeader, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { RawBodyRequest } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
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
  @ApiOperation({
    operationId: 'listReviews',
    summary: "List a product's reviews",
    description: 'Cursor-paginated, newest first.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: ReviewPageDto })
  listReviews(@Param('id', new ParseUUIDPipe()) id: string, @Query() query: PageQueryDto) {
    return this.reviews.list(id, query);
  }

  @Post('products/:id/reviews')
  @ApiOperation({
    operationId: 'createReview',
    summary: 'Review a product you bought',
    description: 'Allowed once per product, for a customer with a paid order containing it.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiCreatedResponse({ type: ReviewDto })
  @ApiProblems(
    [403, '`REVIEW_NOT_ALLOWED`: no paid order contains the product'],
    [404, '`PRODUCT_NOT_FOUND`'],
    [409, '`REVIEW_EXISTS`'],
  )
  review(
    @CurrentPrincipal() me: Principal,
    @Param('id', new ParseUUIDPipe()) id: string,
    @Body() dto: CreateReviewDto,
  ): Promise<ReviewDto> {
    return this.reviews.create(me, id, dto);
  }

  @Public()
  @Get('products/:id/also-bought')
  @ApiOperation({
    operationId: 'listAlsoBought',
    summary: 'Products frequently bought together with this one',
    description: 'Active products that appear most often in paid orders together with this product.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: ProductListDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'])
  alsoBought(@Param('id', new ParseUUIDPipe()) id: string): Promise<ProductListDto> {
    return this.recommendations.alsoBought(id);
  }

  @Get('me/recommendations')
  @ApiOperation({
    operationId: 'listRecommendations',
    summary: 'Recommendations for the signed-in customer',
    description: "Active products chosen from the customer's own purchases and what others bought with them.",
  })
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
  @ApiOperation({
    operationId: 'receiveStorageNotification',
    summary: 'Object-store upload notification',
    description:
      'Called by the S3-compatible object store (an S3/MinIO event notification, `Records[].s3.object.key`) ' +
      'when an upload completes. Authenticated with `Authorization: Bearer <STORAGE_WEBHOOK_TOKEN>` before ' +
      'the body is read; each record is confirmed with HeadObject (declared size and type) before its image ' +
      'is marked ready. Records that are not ours are acknowledged and ignored.',
  })
  @ApiHeader({ name: 'Authorization', required: true, description: '`Bearer <STORAGE_WEBHOOK_TOKEN>`' })
  @ApiNoContentResponse({ description: 'Recorded (or not ours, and ignored)' })
  @ApiProblems(
    [400, '`WEBHOOK_SIGNATURE_INVALID` (missing or wrong token) or `BAD_REQUEST` (not an S3 event notification)'],
    [503, '`SERVICE_UNAVAILABLE`: the store could not be asked; it retries later'],
  )
  uploaded(
    @Req() req: RawBodyRequest<FastifyRequest>,
    @Headers('authorization') authorization: string | undefined,
  ): Promise<void> {
    return this.images.uploaded(req.rawBody, authorization);
  }
}
