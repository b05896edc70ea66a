/* eslint-disable @typescript-eslint/no-require-imports */
/**
 * `npm run bench:catalog` — catalog read throughput, in one run:
 * a bare Nest-Fastify baseline route, cached product detail, cached listing page (20 items),
 * and the same two uncached (a second API process with CATALOG_CACHE_ENABLED=false), on a fresh
 * database seeded with 1,000+ products, and each API process's peak resident memory (VmHWM).
 * Results go to docs/BENCHMARKS.md.
 */
import { Pool } from 'pg';
import {
  apiMemory,
  apiProcessCount,
  apiSettings,
  build,
  clientAddress,
  describeMemory,
  freshDatabase,
  startApi,
  startBaseline,
  stopApi,
  writeBenchmarkSection,
} from './support';
import { RunChecks, beforeAndAfter, loadRun, rateOf, success, unexpected } from './load-check';

const autocannon = require('autocannon') as (opts: unknown) => Promise<any>;

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const PRODUCTS = Number(process.env.BENCH_PRODUCTS ?? 1000);

interface Result {
  /** 2xx answers per second: an error answer is no catalog read. */
  rps: number;
  p50: number;
  p99: number;
  /** Errors, timeouts, resets and answers other than 2xx (any of them fails the run). */
  errors: number;
}

/**
 * Every run's errors, timeouts, resets and statuses: any error, or any answer but a 2xx, fails
 * the benchmark (exit 1, nothing written).
 */
const checks = new RunChecks();

async function measure(label: string, url: string, paths: string[]): Promise<Result> {
  let i = 0;
  const run = async (duration: number) =>
    autocannon({
      url,
      connections: CONNECTIONS,
      duration,
      requests: [
        {
          method: 'GET',
          // each request from the next of CLIENT_ADDRESSES clients (benchApiEnv: rate limiting on)
          setupRequest: (req: Record<string, unknown>) => {
            const n = i++;
            return {
              ...req,
              path: paths[n % paths.length],
              headers: { ...(req.headers as object), 'x-forwarded-for': clientAddress(n) },
            };
          },
        },
      ],
    });
  // warm-up (fills the cache for the cached scenarios)
  checks.check(loadRun(`${label} warm-up`, await run(2)), success);
  const r = checks.check(loadRun(label, await run(DURATION_S)), success);
  const others = Object.values(unexpected(r, success)).reduce((sum, n) => sum + n, 0);
  return {
    rps: rateOf(r, success),
    p50: r.p50,
    p99: r.p99,
    errors: r.errors + r.resets + others,
  };
}

async function seed(pool: Pool): Promise<string[]> {
  await pool.query(
    `INSERT INTO categories (id, name, slug) VALUES (gen_random_uuid(), 'Bench', 'bench')`,
  );
  const { rows } = await pool.query(
    `WITH p AS (
       INSERT INTO products (sku, name, description, price_amount, currency, category_id, units_sold,
                             rating_sum, rating_count, created_at)
       SELECT 'BENCH-' || g, 'Product ' || g || ' ' || (ARRAY['trail mix','cashews','watercolour','brush','granola'])[1 + g % 5],
              'Benchmark product number ' || g, 1000 + (g * 37) % 90000, 'INR',
              (SELECT id FROM categories WHERE slug = 'bench'), (g * 13) % 500, (g % 5 + 1) * 3, 3,
              now() - (g % 60) * interval '1 day'
         FROM generate_series(1, $1) g
       RETURNING id)
     , inv AS (INSERT INTO inventory_items (product_id, on_hand, reserved) SELECT id, 100, 0 FROM p)
     SELECT id FROM p`,
    [PRODUCTS],
  );
  return rows.map((r: { id: string }) => r.id);
}

const fmt = (n: number) => n.toFixed(0);

async function main(): Promise<void> {
  console.log('building…');
  const provenance = build();
  const url = await freshDatabase('shop_bench_catalog');
  const pool = new Pool({ connectionString: url, max: 2 });
  const ids = await seed(pool);
  // the planner's statistics, as autovacuum keeps them on a live catalog: a table loaded a moment
  // ago has none until its first autoanalyze (up to a minute), which made the runs measure
  // whichever plan the moment happened to have
  await pool.query('ANALYZE products; ANALYZE inventory_items');
  const cachedEnv = { DATABASE_URL: url, REDIS_KEY_PREFIX: 'bench-catalog' };
  const cached = await startApi(cachedEnv);
  const uncached = await startApi({
    DATABASE_URL: url,
    REDIS_KEY_PREFIX: 'bench-catalog-off',
    CATALOG_CACHE_ENABLED: 'false',
  });
  const baseline = await startBaseline();
  try {
    const detailPaths = ids.slice(0, 200).map((id) => `/v1/products/${id}`);
    const listPaths = [
      '/v1/products?limit=20',
      '/v1/products?limit=20&sort=newest',
      '/v1/products?limit=20&sort=price_asc',
    ];
    // the baseline right before and right after the cached runs, its mean the ratios' base: this
    // machine's speed drifts by a third within minutes, and a single baseline run took the drift
    // for a change in the API's ratio
    console.log('baseline…');
    const baseBefore = await measure('baseline route, before', baseline.url, ['/ping']);
    console.log('cached detail…');
    const cDetail = await measure('cached detail', cached.url, detailPaths);
    console.log('cached listing…');
    const cList = await measure('cached listing', cached.url, listPaths);
    console.log('baseline again…');
    const baseAfter = await measure('baseline route, after', baseline.url, ['/ping']);
    const base = beforeAndAfter(baseBefore, baseAfter);
    console.log('uncached detail…');
    const uDetail = await measure('uncached detail', uncached.url, detailPaths);
    console.log('uncached listing…');
    const uList = await measure('uncached listing', uncached.url, listPaths);

    const memCached = apiMemory(cached.proc.pid);
    const memUncached = apiMemory(uncached.proc.pid);
    const mem = describeMemory;
    const row = (name: string, r: Result, ratio: string) =>
      `| ${name} | ${fmt(r.rps)} | ${r.p50} / ${r.p99} | ${r.errors} | ${ratio} |`;
    const md = `## Catalog reads

Command: \`npm run bench:catalog\` (env: BENCH_DURATION=${DURATION_S}, BENCH_CONNECTIONS=${CONNECTIONS}, BENCH_PRODUCTS=${PRODUCTS}). Measured on the 2-core development machine: \`node dist/main.js\` (API_PROCESSES=${apiProcessCount()}) with ${apiSettings(cachedEnv)}; the baseline is a bare Nest + Fastify app with one JSON route, measured right before and right after the cached runs (the ratios use the mean); "uncached" is a second API process with \`CATALOG_CACHE_ENABLED=false\`. Detail requests rotate over 200 products, listing requests over three first pages of 20 (relevance, newest, price).

| scenario | 2xx answers/s | p50 / p99 ms | errors, timeouts, resets, non-2xx | ratio |
|---|---|---|---|---|
${row('baseline route (bare Nest-Fastify), before the cached runs', baseBefore, '—')}
${row('baseline route, after the cached runs', baseAfter, '—')}
| baseline: the mean of the two | ${fmt(base.rps)} | ${base.latencies} | ${baseBefore.errors} before, ${baseAfter.errors} after | 1.00× baseline |
${row('cached product detail', cDetail, `**${(cDetail.rps / base.rps).toFixed(2)}× baseline** (target ≥ 0.5)`)}
${row('cached listing, 20 items', cList, `**${(cList.rps / base.rps).toFixed(2)}× baseline** (target ≥ 0.3)`)}
${row('uncached product detail', uDetail, `${(uDetail.rps / base.rps).toFixed(2)}× baseline`)}
${row('uncached listing, 20 items', uList, `${(uList.rps / base.rps).toFixed(2)}× baseline`)}

Cached listing vs uncached listing: **${(cList.rps / uList.rps).toFixed(1)}×** (target ≥ 5×). Cached detail vs uncached detail: ${(cDetail.rps / uDetail.rps).toFixed(1)}×.

API resident memory (VmHWM, read from /proc after the run, per process serving requests; target ≤ 200 MiB): cached process **${mem(memCached)}**, uncached process ${mem(memUncached)}.

Every load run (autocannon; throughput counts 2xx answers only, and a run with any error, timeout, reset or answer other than 2xx fails the benchmark, which then writes nothing here):
${checks.summary()}
`;
    console.log(`\n${md}`);
    if (checks.refuse()) {
      process.exitCode = 1;
      return;
    }
    writeBenchmarkSection('catalog', md, provenance);
    const ok = (b: boolean) => (b ? 'met' : 'NOT met');
    console.log(
      `targets: cached detail ${(cDetail.rps / base.rps).toFixed(2)}× the bare route, target ≥ 0.5×: ${ok(cDetail.rps / base.rps >= 0.5)}`,
    );
    console.log(
      `targets: cached listing ${(cList.rps / base.rps).toFixed(2)}× the bare route, target ≥ 0.3×: ${ok(cList.rps / base.rps >= 0.3)}`,
    );
    console.log(
      `targets: cached listing ${(cList.rps / uList.rps).toFixed(1)}× uncached, target ≥ 5×: ${ok(cList.rps / uList.rps >= 5)}`,
    );
    const peaks = [memCached, memUncached].map((m) => m?.peakMiB ?? Infinity);
    console.log(
      `targets: API peak RSS ${peaks.join(' / ')} MiB (cached / uncached), target ≤ 200 MiB: ${ok(Math.max(...peaks) <= 200)}`,
    );
  } finally {
    await Promise.all([stopApi(cached.proc), stopApi(uncached.proc), stopApi(baseline.proc)]);
    await pool.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
