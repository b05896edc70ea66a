import { Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { mapProductSummary } from './catalog.mapper';
import { ProductListDto } from './dto/catalog.dto';
import { ObjectStorage } from './object-storage';
import { ProductRepository, ProductSummaryView } from './product.repository';
import { RecommendationRepository } from './recommendation.repository';
import { productNotFound } from './product-not-found';

const TOP_K = 10;

/** "Bought together" from paid orders: recomputed by a scheduled job, served from a table. */
@Injectable()
export class RecommendationsService {
  private readonly logger = new Logger(RecommendationsService.name);

  constructor(
    private readonly recommendations: RecommendationRepository,
    private readonly products: ProductRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly storage: ObjectStorage,
  ) {}

  private summary = (r: ProductSummaryView) => mapProductSummary(r, (key) => this.storage.publicUrl(key));

  /** Replaces every product's top-K neighbours in one transaction (null: another run is at it). Idempotent. */
  @OnJob(JobName.RecomputeRecommendations)
  async recompute(): Promise<number | null> {
    const n = await this.tx.run(() => this.recommendations.recompute(TOP_K, this.clock.now()));
    this.logger.log(n === null ? 'recommendations: another run is under way' : `recomputed ${n} recommendations`);
    return n;
  }

  async alsoBought(productId: string): Promise<ProductListDto> {
    if (!(await this.products.findById(productId, { activeOnly: true }))) {
      throw productNotFound();
    }
    return { items: (await this.recommendations.alsoBought(productId, TOP_K)).map(this.summary) };
  }

  /** Neighbours of the customer's purchases; top-ranked products for a new customer. */
  async forCustomer(me: Principal): Promise<ProductListDto> {
    const rows = await this.recommendations.forCustomer(me.userId, TOP_K);
    if (rows.length > 0) return { items: rows.map(this.summary) };
    const top = await this.products.page({
      sort: 'relevance',
      limit: TOP_K,
      asOf: this.clock.now(),
      maxUnits: await this.products.maxUnitsSold(),
      after: null,
    });
    return { items: top.map(this.summary) };
  }
}
