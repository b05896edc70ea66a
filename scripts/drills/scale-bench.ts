/* eslint-disable @typescript-eslint/no-require-imports */
/**
 * `node -r ./scripts/ts-register.js scripts/drills/scale-bench.ts` — checkout throughput with
 * one API process, then two behind a client-side round robin, on the drill's private PostgreSQL
 * and Redis (same machine, same settings). Prints a markdown table for docs/SCALING.md.
 *
 * Env: BENCH_DURATION (12 s per measurement), BENCH_CONNECTIONS (32 in all), BENCH_SKUS (16).
 */
import { randomUUID } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkoutRequests, registerBuyers } from '../../bench/checkout-load';
import { BENCH_SECRETS } from '../../bench/support';
import { Cluster } from './cluster';

const autocannon = require('autocannon') as (opts: unknown) => Promise<any>;

const DURATION = Number(process.env.BENCH_DURATION ?? 12);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SKUS = Number(process.env.BENCH_SKUS ?? 16);

interface Result {
  ok: number;
  rps: number;
  p50: number;
  p99: number;
  other: Record<string, number>;
}

function load(
  url: string,
  tokens: string[],
  products: string[],
  connections: number,
  duration: number,
) {
  return autocannon({
    url,
    connections,
    duration,
    requests: checkoutRequests(tokens, () => products[Math.floor(Math.random() * products.length)]),
  });
}

function summarize(runs: any[]): Result {
  const other: Record<string, number> = {};
  let ok = 0;
  for (const r of runs) {
    for (const [code, s] of Object.entries(
      (r.statusCodeStats ?? {}) as Record<string, { count: number }>,
    )) {
      if (code === '201') ok += s.count;
      else other[code] = (other[code] ?? 0) + s.count;
    }
  }
  const duration = Math.max(...runs.map((r) => r.duration as number));
  return {
    ok,
    rps: ok / duration,
    p50: Math.max(...runs.map((r) => r.latency.p50 as number)),
    p99: Math.max(...runs.map((r) => r.latency.p99 as number)),
    other,
  };
}

async function main(): Promise<void> {
  const cluster = new Cluster();
  process.once('exit', () => cluster.cleanup());
  process.once('SIGINT', () => process.exit(130));
  try {
    await Promise.all([cluster.startPostgres(), cluster.startRedis()]);
    const env = (): Record<string, string> => ({
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      DATABASE_URL: cluster.databaseUrl,
      DATABASE_POOL_SIZE: '20',
      REDIS_URL: cluster.redisUrl,
      REDIS_KEY_PREFIX: 'bench',
      ...BENCH_SECRETS, // random: a production boot refuses secrets made of words
      JWT_PRIVATE_KEY: '',
      JWT_PUBLIC_KEY: '',
      STORAGE_ENDPOINT: 'https://storage.scale-bench.invalid',
      STORAGE_ACCESS_KEY_ID: 'bench-access-key',
      STRIPE_SECRET_KEY: 'sk_test_bench_unused',
      STRIPE_TEST_MODE: 'true',
      RATE_LIMIT_ENABLED: 'false',
      PURCHASE_LIMIT_OPEN_ORDERS: '0',
      PURCHASE_LIMIT_UNITS_PER_PRODUCT: '0',
      PURCHASE_LIMIT_ABANDONED_PER_DAY: '0',
      MAIL_OUTBOX_DIR: join(tmpdir(), 'shop-scale-bench-mail'),
    });
    cluster.migrate(env());
    await cluster.addApps(env);
    const [a, b] = cluster.apis;
    a.start();
    b.start();
    await Promise.all([a.ready(180_000), b.ready(180_000)]);

    // buyers and products, through the API (production mode: a SQL-promoted admin)
    const tokens = await registerBuyers(a.url, 64);
    const { Client } = await import('pg');
    const db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    const products: string[] = [];
    for (let i = 0; i < SKUS; i++) {
      const id = randomUUID();
      await db.query(
        `INSERT INTO products (id, sku, name, price_amount, currency) VALUES ($1, $2, 'Bench item', 24900, 'INR')`,
        [id, `SCALE-${i}`],
      );
      await db.query(
        `INSERT INTO inventory_items (product_id, on_hand, reserved) VALUES ($1, 10000000, 0)`,
        [id],
      );
      await db.query(
        `INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason) VALUES ($1, 'initial', 10000000, 0, 'bench')`,
        [id],
      );
      products.push(id);
    }
    await db.end();

    await Promise.all([load(a.url, tokens, products, 8, 3), load(b.url, tokens, products, 8, 3)]); // warm-up both
    // 1, 2, 2, 1: alternating, so a change in the machine's other load does not favour one layout
    const one = () =>
      load(a.url, tokens, products, CONNECTIONS, DURATION).then((r) => summarize([r]));
    const two = () =>
      Promise.all([
        load(a.url, tokens, products, CONNECTIONS / 2, DURATION),
        load(b.url, tokens, products, CONNECTIONS / 2, DURATION),
      ]).then(summarize);
    const rows: [number, Result, number][] = [];
    for (const [n, run] of [
      [1, one],
      [2, two],
      [2, two],
      [1, one],
    ] as const) {
      const r = await run();
      rows.push([n, r, loadavg()[0]]);
    }
    const fmt = (r: Result) =>
      `${r.rps.toFixed(0)} | ${r.p50} / ${r.p99} | ${JSON.stringify(r.other)}`;
    console.log(
      `\n| run | API processes | orders/s (201) | p50 / p99 ms | other answers | load avg after |`,
    );
    console.log(`|---|---|---|---|---|---|`);
    rows.forEach(([n, r, l], i) =>
      console.log(`| ${i + 1} | ${n} | ${fmt(r)} | ${l.toFixed(1)} |`),
    );
    console.log(
      `\n${CONNECTIONS} connections in all, ${DURATION} s each, ${SKUS} SKUs, ${new Date().toISOString()}`,
    );
    await Promise.all([a.stop(), b.stop()]);
  } finally {
    cluster.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
