/* eslint-disable @typescript-eslint/no-require-imports */
/**
 * `npm run bench:checkout-cpu` — where a checkout's CPU goes: per created order, the CPU time
 * (user + system, from /proc/<pid>/stat before and after the run) of the API process, of all
 * PostgreSQL processes, of Redis and of this load generator, with 64 connections POSTing
 * /v1/orders (fresh Idempotency-Key each, 100 buyers) to one API process on a fresh database.
 * Two scenarios: 64 distinct SKUs and one hot SKU; BENCH_ROUNDS rounds of each (default 2).
 *
 * Throughput on this 2-core machine drifts by a third within minutes, so compare two builds by
 * alternating them round by round (A, B, A, B…: build one commit, run, build the other, run) and
 * read the CPU per order, which drifts less. docs/BENCHMARKS.md, "Checkout: where a request's
 * CPU goes". Not a target of its own: bench:flash-sale holds issue 14's targets. Every process
 * named postgres / redis-server on the machine is counted: run it on an otherwise idle machine.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { Pool } from 'pg';
import { checkoutRequests, registerBuyers } from './checkout-load';
import { build, freshDatabase, startApi, stopApi } from './support';

const autocannon = require('autocannon') as (opts: unknown) => Promise<any>;

const CONNECTIONS = 64;
const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const BUYERS = 100;
const SKUS = 64;

/** utime + stime of a process, in clock ticks (0 once it is gone). */
function cpuTicks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

function pidsNamed(name: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === name;
      } catch {
        return false;
      }
    });
}

const ticksOf = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
/** Clock ticks per second (USER_HZ): 100 on Linux. */
const TICK_MS = 10;

async function main(): Promise<void> {
  build();
  const url = await freshDatabase('shop_bench_checkout_cpu');
  const pool = new Pool({ connectionString: url, max: 4 });
  const products: string[] = [];
  for (let i = 0; i < SKUS; i++) {
    const id = randomUUID();
    await pool.query(
      `INSERT INTO products (id, sku, name, price_amount, currency) VALUES ($1, $2, 'Bench item', 24900, 'INR')`,
      [id, `CPU-${id.slice(0, 8)}`],
    );
    await pool.query(
      `INSERT INTO inventory_items (product_id, on_hand, reserved) VALUES ($1, 100000000, 0)`,
      [id],
    );
    products.push(id);
  }
  const { url: api, proc } = await startApi({
    DATABASE_URL: url,
    REDIS_KEY_PREFIX: `bench-cpu-${Date.now()}`,
    PURCHASE_LIMIT_UNITS_PER_PRODUCT: '0',
    PURCHASE_LIMIT_OPEN_ORDERS: '0',
    PURCHASE_LIMIT_ABANDONED_PER_DAY: '0',
    // as bench:flash-sale (its RATE_LIMITS_OFF): the per-account order limit would refuse this load
    RATE_LIMIT_ENABLED: 'false',
  });
  try {
    const tokens = await registerBuyers(api, BUYERS);
    const run = (pick: () => string, duration: number) =>
      autocannon({
        url: api,
        connections: CONNECTIONS,
        duration,
        requests: checkoutRequests(tokens, pick),
      });
    const scenarios: [string, () => string][] = [
      [`${SKUS} SKUs`, () => products[Math.floor(Math.random() * products.length)]],
      ['one SKU', () => products[0]],
    ];
    await run(scenarios[0][1], 3); // warm-up
    console.log(
      '| scenario | orders/s | API ms | PostgreSQL ms | Redis ms | load generator ms | total ms |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, pick] of scenarios) {
        const before = [
          cpuTicks(proc.pid!),
          ticksOf(pidsNamed('postgres')),
          ticksOf(pidsNamed('redis-server')),
          cpuTicks(process.pid),
        ];
        const result = await run(pick, DURATION_S);
        const after = [
          cpuTicks(proc.pid!),
          ticksOf(pidsNamed('postgres')),
          ticksOf(pidsNamed('redis-server')),
          cpuTicks(process.pid),
        ];
        const orders = (result.statusCodeStats?.['201']?.count as number | undefined) ?? 0;
        const seconds = (result.duration as number | undefined) ?? DURATION_S;
        const per = after.map((t, i) => ((t - before[i]) * TICK_MS) / Math.max(orders, 1));
        const cells = per.map((ms) => ms.toFixed(2));
        console.log(
          `| ${name} | ${(orders / seconds).toFixed(0)} | ${cells.join(' | ')} | ${per.reduce((a, b) => a + b, 0).toFixed(2)} |`,
        );
      }
    }
  } finally {
    await stopApi(proc);
    await pool.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
