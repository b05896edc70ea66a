import { CatalogCache } from '../../src/catalog/catalog-cache';
import { ProductRepository } from '../../src/catalog/product.repository';
import { RecommendationRepository } from '../../src/catalog/recommendation.repository';
import { ReviewRepository } from '../../src/catalog/review.repository';
import { TransactionHost } from '../../src/database/transaction-host';
import { GATE_BUSY_RETRY_AFTER_SECONDS } from '../../src/common/throttling/concurrency-gate';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import { HttpResponse, expectProblem } from '../support/http';
import { buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * Anyone can make catalog misses (a listing URL of their own: a limit, a `q`, a cursor they
 * made), each a read of PostgreSQL that may score every product on sale. They used to take as
 * many pool connections as came in at once, and checkouts waited behind them for the pool, then
 * failed. Builds now run at most a quarter of the pool at once (at least 2); the rest wait as
 * long as for a pool connection, then get 503 with Retry-After; a page read from the cache lately
 * rebuilds ahead of one-off URLs.
 */
describe.each([
  ['on', true],
  ['off (every read a build)', false],
])('a flood of catalog misses leaves checkout its connections, the cache %s', (_name, cacheOn) => {
  let t: TestApp;
  /**
   * The wait for a build slot (DATABASE_POOL_WAIT_MS). The floods below are 8 reads of 4 s, 2 at
   * once: the second pair could not begin before ~4 s — past it, so the last six of the flood are
   * refused 503 at 2.5 s. (4 s, not 1.5: the checkout placed meanwhile is timed, and a stall of
   * this process, which serves both, must not pass for a wait behind the builds.) The rebuild
   * test's last one-off begins ~1.5 s in (0.5 s builds): within it.
   */
  const POOL_WAIT_MS = 2_500;

  beforeAll(async () => {
    t = await bootTestApp({
      env: {
        DATABASE_POOL_SIZE: '4',
        DATABASE_POOL_WAIT_MS: String(POOL_WAIT_MS),
        CATALOG_CACHE_ENABLED: String(cacheOn),
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  afterEach(() => jest.restoreAllMocks());

  /** Reads made slow (a pool connection held `seconds` first): those begun, running now, at most at once. */
  /** Reads that take `seconds` in PostgreSQL — after `held` settles, when given. */
  function slowReads(seconds: number, held?: Promise<void>) {
    const tx = t.app.get(TransactionHost);
    const reads = { started: [] as string[], running: 0, most: 0 };
    const slowly = async <T>(label: string, read: () => Promise<T>): Promise<T> => {
      reads.started.push(label);
      reads.most = Math.max(reads.most, ++reads.running);
      try {
        await held;
        // (in statements of 2 s at most: a catalog read's statements are cut after ~3 s)
        const statements = Math.ceil(seconds / 2);
        for (let i = 0; i < statements; i++)
          await tx.query(`SELECT pg_sleep(${seconds / statements})`);
        return await read();
      } finally {
        reads.running--;
      }
    };
    return { reads, slowly };
  }

  /**
   * A flood's answers, each 200 or a 503 with Retry-After refused at the gate — after waiting for
   * a slot as long as for a pool connection, not at once; at least one of each: the 503s are
   * asserted, not merely allowed. `ms`: how long each took to answer (timed).
   */
  function expectServedOrRefusedAfterTheWait(answers: { res: HttpResponse; ms: number }[]): {
    served: number;
    refused: number;
  } {
    for (const { res } of answers) expect([200, 503]).toContain(res.status);
    const refused = answers.filter(({ res }) => res.status === 503);
    for (const { res, ms } of refused) {
      expectProblem(res, 503, 'SERVICE_UNAVAILABLE');
      expect(res.headers.get('retry-after')).toBe(String(GATE_BUSY_RETRY_AFTER_SECONDS));
      // (a timer's own rounding: a few ms of slack)
      expect(ms).toBeGreaterThanOrEqual(POOL_WAIT_MS - 50);
    }
    const counts = { served: answers.length - refused.length, refused: refused.length };
    expect(counts.served).toBeGreaterThanOrEqual(2);
    expect(counts.refused).toBeGreaterThanOrEqual(1);
    return counts;
  }

  /** Sends a request, timing its answer. */
  const timed = async (request: Promise<HttpResponse>) => {
    const sent = performance.now();
    const res = await request;
    return { res, ms: performance.now() - sent };
  };

  /** Each listing's read made slow: the builds begun (`sort:limit`), running now, at most at once. */
  function slowPages(seconds: number, held?: Promise<void>) {
    const repository = t.app.get(ProductRepository);
    const page = repository.page.bind(repository);
    const { reads, slowly } = slowReads(seconds, held);
    jest
      .spyOn(repository, 'page')
      .mockImplementation((query) => slowly(`${query.sort}:${query.limit - 1}`, () => page(query)));
    return reads;
  }

  it('8 slow listings at once: at most 2 build, a checkout meanwhile is placed at once; every listing is 200 or 503 with Retry-After', async () => {
    const admin = (await createAdmin(t)).accessToken;
    const product = await createProduct(t, admin, { stock: 10 });
    const [buyer] = await buyers(t.http, 1);
    const builds = slowPages(4);
    // distinct, valid listings: each a miss
    const listings = Array.from({ length: 8 }, (_, i) =>
      timed(t.http.get(`/v1/products?sort=newest&limit=${20 + i}`)),
    );
    await waitFor('two builds under way', async () => builds.running, { until: (n) => n >= 2 });
    const started = Date.now();
    const order = await placeOrder(t.http, buyer, [{ productId: product.id, quantity: 1 }]);
    expect(order.status).toBe(201);
    // (not behind a build, which holds its connection 4 s)
    expect(Date.now() - started).toBeLessThan(3_000);
    const answers = await Promise.all(listings);
    expect(builds.most).toBe(2);
    const { served } = expectServedOrRefusedAfterTheWait(answers);
    // a refused listing was never built: only the served ones began a build
    expect(builds.started).toHaveLength(served);
    jest.restoreAllMocks();
    // the gate lets go: a listing afterwards is built and answered
    expect((await t.http.get('/v1/products?sort=newest&limit=41')).status).toBe(200);
  });

  it("uncached public reads (a product's reviews, what was bought with it) go through the same gate: at most 2 at once, a checkout meanwhile placed at once", async () => {
    const admin = (await createAdmin(t)).accessToken;
    const product = await createProduct(t, admin, { stock: 10 });
    const [buyer] = await buyers(t.http, 1);
    const { reads, slowly } = slowReads(4);
    const reviews = t.app.get(ReviewRepository);
    const page = reviews.page.bind(reviews);
    jest
      .spyOn(reviews, 'page')
      .mockImplementation((...args) => slowly('reviews', () => page(...args)));
    const recommendations = t.app.get(RecommendationRepository);
    const alsoBought = recommendations.alsoBought.bind(recommendations);
    jest
      .spyOn(recommendations, 'alsoBought')
      .mockImplementation((...args) => slowly('also-bought', () => alsoBought(...args)));
    // any cursor of one's own making: nothing is cached
    const flood = Array.from({ length: 8 }, (_, i) =>
      i % 2
        ? timed(t.http.get(`/v1/products/${product.id}/also-bought`))
        : timed(t.http.get(`/v1/products/${product.id}/reviews?limit=${10 + i}`)),
    );
    await waitFor('two reads under way', async () => reads.running, { until: (n) => n >= 2 });
    const started = Date.now();
    const order = await placeOrder(t.http, buyer, [{ productId: product.id, quantity: 1 }]);
    expect(order.status).toBe(201);
    // (not behind a build, which holds its connection 4 s)
    expect(Date.now() - started).toBeLessThan(3_000);
    const answers = await Promise.all(flood);
    expect(reads.most).toBe(2);
    const { served } = expectServedOrRefusedAfterTheWait(answers);
    expect(reads.started).toHaveLength(served);
  });

  // (a cache hit is what marks a page as read again)
  if (!cacheOn) return;

  it('a page shoppers read (a cache hit lately) rebuilds ahead of the one-off URLs queued before it', async () => {
    const admin = (await createAdmin(t)).accessToken;
    const home = '/v1/products?sort=price_asc&limit=12';
    // a first miss is kept nowhere, the second is kept, the third a hit: read again
    for (let i = 0; i < 3; i++) expect((await t.http.get(home)).status).toBe(200);
    await createProduct(t, admin, { stock: 1 }); // a write: every page is built again
    // the builds held until the page's request is queued behind the one-offs (timed, a slow
    // machine let a fourth one-off take the first free slot before the page's request arrived)
    let release = () => undefined as void;
    const builds = slowPages(
      0.5,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    const oneOffs = Array.from({ length: 6 }, (_, i) =>
      t.http.get(`/v1/products?sort=newest&limit=${60 + i}`),
    );
    await waitFor('two builds under way', async () => builds.running, { until: (n) => n >= 2 });
    const gate = t.app.get<CatalogCache, { builds: { queued: number } }>(CatalogCache).builds;
    await waitFor('the four others queued', async () => gate.queued, { until: (n) => n === 4 });
    const read = t.http.get(home);
    await waitFor('the page queued behind them', async () => gate.queued, {
      until: (n) => n === 5,
    });
    release();
    const answers = await Promise.all([read, ...oneOffs]);
    expect(answers.map((r) => r.status)).toEqual(Array(7).fill(200));
    // the page took one of the first two slots to free up (the release frees both at once: the
    // page is handed its slot first, but a one-off handed the other may reach its build a moment
    // sooner), ahead of the three other one-offs queued before it — last of all without the lane
    expect([2, 3]).toContain(builds.started.indexOf('price_asc:12'));
  });
});
