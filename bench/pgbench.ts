import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The pgbench binary: `PGBENCH` or the one on the PATH (PostgreSQL's client tools). */
const PGBENCH = process.env.PGBENCH ?? 'pgbench';

export interface PgbenchResult {
  /** Transactions per second, without the initial connection time. */
  tps: number;
  /** Average latency of a transaction, ms. */
  latencyMs: number;
  transactions: number;
  failed: number;
}

/**
 * The minimal reservation transaction, as the Node-driven baseline runs it (bench/flash-sale.ts
 * `baseline()`): lock the inventory row, and when a unit is available reserve it and insert an
 * order row — `\gset` captures the availability the SELECT already returns, so the check costs
 * no extra round trip. The product id is a literal: a pgbench variable is numeric, and looking
 * the uuid up from a number would add a statement the baseline does not have.
 */
function script(productId: string): string {
  return `BEGIN;
SELECT on_hand - reserved AS available FROM inventory_items WHERE product_id = '${productId}' FOR UPDATE \\gset
\\if :available >= 1
UPDATE inventory_items SET reserved = reserved + 1 WHERE product_id = '${productId}';
INSERT INTO bench_orders (id, product_id, qty) VALUES (gen_random_uuid(), '${productId}', 1);
\\endif
COMMIT;
`;
}

/**
 * pgbench running the minimal reservation transaction on `productIds`: one script per product,
 * all of equal weight, so each transaction picks one of them at random — `\set id random(1, n)`
 * without a lookup (one product: the hot row). `-n` (no vacuum of pgbench's own tables, which
 * this database does not have), `-j 2` threads, the default (simple) query protocol.
 */
export async function pgbench(
  databaseUrl: string,
  productIds: string[],
  opts: { connections: number; durationS: number },
): Promise<PgbenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-pgbench-'));
  try {
    const files = productIds.map((id, i) => {
      const file = join(dir, `reserve-${i}.sql`);
      writeFileSync(file, script(id));
      return `${file}@1`;
    });
    const args = [
      '-n',
      '-c',
      String(opts.connections),
      '-j',
      '2',
      '-T',
      String(opts.durationS),
      ...files.flatMap((f) => ['-f', f]),
      databaseUrl,
    ];
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(PGBENCH, args, { maxBuffer: 16 * 1024 * 1024 }, (err, out, errOut) =>
        err ? reject(new Error(`pgbench failed: ${err.message}\n${errOut}`)) : resolve(out),
      );
    });
    const number = (re: RegExp): number => {
      const m = re.exec(stdout);
      if (!m) throw new Error(`pgbench output without ${re.source}:\n${stdout}`);
      return Number(m[1]);
    };
    return {
      tps: number(/^tps = ([\d.]+) \(without initial connection time\)/m),
      latencyMs: number(/^latency average = ([\d.]+) ms/m),
      transactions: number(/^number of transactions actually processed: (\d+)/m),
      failed: /^number of failed transactions: (\d+)/m.test(stdout)
        ? number(/^number of failed transactions: (\d+)/m)
        : 0,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One scenario's pgbench at one client count: run before and after the API's runs. */
export interface PgbenchAt {
  clients: number;
  before: PgbenchResult;
  after: PgbenchResult;
  /** The mean of before and after: tx/s, and average latency in ms. */
  tps: number;
  latencyMs: number;
}

export function pgbenchAt(clients: number, before: PgbenchResult, after: PgbenchResult): PgbenchAt {
  return {
    clients,
    before,
    after,
    tps: (before.tps + after.tps) / 2,
    latencyMs: (before.latencyMs + after.latencyMs) / 2,
  };
}

/**
 * One scenario's baseline: pgbench at each client count (the benchmark's connections and the
 * API's pools' own), and the best of them — the database's own limit, the ratio's denominator.
 * The API never holds more connections than its pools: fewer clients than the benchmark's 64
 * ran the minimal transaction 1.5–1.8× faster, and a baseline at 64 only asked less of the API.
 */
export function pgbenchBaseline(runs: PgbenchAt[]): { runs: PgbenchAt[]; best: PgbenchAt } {
  if (runs.length === 0) throw new Error('no pgbench run');
  return { runs, best: runs.reduce((best, r) => (r.tps > best.tps ? r : best)) };
}

/** The client counts pgbench runs at: the benchmark's connections, and the API's pools'. */
export function pgbenchClients(benchmarkConnections: number, apiConnections: number): number[] {
  return [...new Set([benchmarkConnections, apiConnections])];
}
