import { Body, Controller, Get, Ip, Param, Post, Query } from '@nestjs/common';
import { ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { UuidParamPipe } from '../common/http/uuid-param.pipe';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { ApiProblems, ApiUuidParam } from '../common/http/api-problems';
import { Public } from '../common/http/public.decorator';
import { PageQueryDto } from '../common/pagination/page-query.dto';
import { CreateReviewDto, ProductListDto, ReviewDto, ReviewPageDto } from './dto/catalog.dto';
import { RecommendationsService } from './recommendations.service';
import { RECOMMENDATION_MIN_CUSTOMERS } from './recommendation.repository';
import { ReviewsService } from './reviews.service';
import { payerOf } from './build-budget';

/** Reviews and recommendations: public reads, and what a signed-in customer writes or gets. */
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
  @ApiProblems([404, '`PRODUCT_NOT_FOUND` (also for a product off sale)'])
  listReviews(
    @Param('id', new UuidParamPipe()) id: string,
    @Query() query: PageQueryDto,
    @Ip() ip: string,
  ) {
    return this.reviews.list(id, query, payerOf(ip));
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
    [
      403,
      '`REVIEW_NOT_ALLOWED`: no paid order contains the product (paid, confirmed, fulfilled or partly refunded; one refunded in full does not count: the sale was undone)',
    ],
    [404, '`PRODUCT_NOT_FOUND`'],
    [409, '`REVIEW_EXISTS`'],
  )
  review(
    @CurrentPrincipal() me: Principal,
    @Param('id', new UuidParamPipe()) id: string,
    @Body() dto: CreateReviewDto,
  ): Promise<ReviewDto> {
    return this.reviews.create(me, id, dto);
  }

  @Public()
  @Get('products/:id/also-bought')
  @ApiOperation({
    operationId: 'listAlsoBought',
    summary: 'Products frequently bought together with this one',
    description:
      'Active products bought together with this product by the most different customers (paid ' +
      `orders of the last year, recomputed every 10 minutes); a pair fewer than ${RECOMMENDATION_MIN_CUSTOMERS} customers bought ` +
      'together is never shown.',
  })
  @ApiUuidParam('id', 'Product id')
  @ApiOkResponse({ type: ProductListDto })
  @ApiProblems([404, '`PRODUCT_NOT_FOUND`'])
  alsoBought(
    @Param('id', new UuidParamPipe()) id: string,
    @Ip() ip: string,
  ): Promise<ProductListDto> {
    return this.recommendations.alsoBought(id, payerOf(ip));
  }

  @Get('me/recommendations')
  @ApiOperation({
    operationId: 'listRecommendations',
    summary: 'Recommendations for the signed-in customer',
    description:
      "Active products chosen from the customer's own purchases and what others bought with them.",
  })
  @ApiOkResponse({ type: ProductListDto })
  forMe(@CurrentPrincipal() me: Principal): Promise<ProductListDto> {
    return this.recommendations.forCustomer(me);
  }
}
