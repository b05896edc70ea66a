import { Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { CatalogCache } from './catalog-cache';
import type { Payer } from './build-budget';
import { mapProductSummary } from './catalog.mapper';
import { ProductListDto } from './dto/catalog.dto';
import { ObjectStorage } from './object-storage';
import { ProductRepository, ProductSummaryView } from './product.repository';
import { RecommendationRepository } from './recommendation.repository';
import { productNotFound } from './product-not-found';

const TOP_K = 10;
/**
 * How many top-ranked products the shared fallback list holds: a customer whose purchases have no
 * neighbours yet (before the first recomputation, or every neighbour bought or off sale) is shown
 * those of them they did not buy, the first TOP_K.
 */
const FALLBACK_CANDIDATES = 2 * TOP_K;
/**
 * The cache key of the fallback's candidates (not a URL: the cached-read hook serves none of it).
 * The same list for every customer shown it, each leaving out what they bought; each build scores
 * every product on sale (relevance has no index): built once per catalog version, as the listings
 * are.
 */
const FALLBACK_TOP = 'recommendations:top-candidates';

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
    private readonly cache: CatalogCache,
  ) {}

  private summary = (r: ProductSummaryView) =>
    mapProductSummary(r, (key) => this.storage.publicUrl(key));

  /** Replaces every product's top-K neighbours in one transaction (null: another run is at it). Idempotent. */
  @OnJob(JobName.RecomputeRecommendations)
  async recompute(): Promise<number | null> {
    const n = await this.tx.run(() => this.recommendations.recompute(TOP_K, this.clock.now()));
    this.logger.log(
      n === null ? 'recommendations: another run is under way' : `recomputed ${n} recommendations`,
    );
    return n;
  }

  /**
   * (Anonymous and uncached: through the catalog's read gate, CatalogCache#readBounded, paid for
   * by `payer` — the client, and its IPv6 /48 — as a listing page it builds.)
   */
  async alsoBought(productId: string, payer?: Payer): Promise<ProductListDto> {
    const rows = await this.cache.readBounded(async () => {
      if (!(await this.products.findById(productId, { activeOnly: true }))) throw productNotFound();
      return this.recommendations.alsoBought(productId, TOP_K);
    }, payer);
    return { items: rows.map(this.summary) };
  }

  /**
   * Neighbours of the customer's purchases; otherwise (a new customer, or no neighbours yet) the
   * top-ranked products — never one the customer bought, as the neighbours never are.
   * (Read each time, not cached per customer nor charged to the build budget: a payment bumps no
   * catalog version, so a cached list would offer what was just bought; and the read grows with
   * the customer's own paid orders only — 6.5 ms of PostgreSQL for 300 of 20 lines, within what
   * the budget leaves a client's listing builds at the per-IP rate.)
   */
  async forCustomer(me: Principal): Promise<ProductListDto> {
    const rows = await this.cache.readBounded(() =>
      this.recommendations.forCustomer(me.userId, TOP_K),
    );
    if (rows.length > 0) return { items: rows.map(this.summary) };
    // (the customer's purchases and the shared candidates: two independent reads, at once)
    const [bought, top] = await Promise.all([
      this.cache.readBounded(() => this.recommendations.boughtBy(me.userId)),
      this.cache.getOrBuild(FALLBACK_TOP, async (): Promise<ProductListDto> => {
        const page = await this.products.page({
          sort: 'relevance',
          limit: FALLBACK_CANDIDATES,
          asOf: this.clock.now(),
          maxUnits: await this.products.maxUnitsSold(),
          after: null,
        });
        return { items: page.map(this.summary) };
      }),
    ]);
    const owned = new Set(bought);
    const { items } = JSON.parse(top) as ProductListDto;
    return { items: items.filter((p) => !owned.has(p.id)).slice(0, TOP_K) };
  }
}
