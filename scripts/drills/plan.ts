import { createHash } from 'node:crypto';
import { Rng } from './rng';

/**
 * The drill's workload as data: every choice (who buys what, which replays, which payment
 * outcome, how webhooks are delivered, which refunds, when faults strike) is drawn from the
 * seed up front, so a seed names one choice sequence (`planDigest` prints it). Timing — and
 * so which requests race — is what varies between runs of the same seed.
 */
export type Replay = 'none' | 'immediate' | 'concurrent' | 'other_api' | 'delayed';
export type Delivery = 'once' | 'twice' | 'concurrent' | 'delayed' | 'reordered';
type Next =
  | 'abandon' // never paid: the reservation expires
  | 'cancel' // customer cancels before paying
  | 'pay_succeed'
  | 'pay_decline'
  | 'pay_abandon' // payment started, never completed: expires from PAYMENT_PENDING
  | 'pay_cancel' // customer cancels while the payment is pending
  | 'pay_cancel_late_success'; // customer cancels, then the bank's success arrives anyway
type RefundPlan = 'none' | 'full' | 'partial' | 'two_partials_concurrent' | 'full_replayed';

export interface FlowPlan {
  i: number;
  startAt: number;
  customer: number;
  api: number;
  lines: { product: number; quantity: number }[];
  createReplay: Replay;
  replayDelayMs: number;
  next: Next;
  payReplay: Replay;
  cancelReplay: Replay;
  delivery: Delivery;
  /** A stale snapshot of the intent, taken before it succeeded, delivered after the success. */
  staleEvent: 'none' | 'payment_intent.payment_failed' | 'payment_intent.canceled';
  refund: RefundPlan;
  lateSuccessDelayMs: number;
}

interface AdjustPlan {
  at: number;
  product: number;
  delta: number;
  api: number;
}

type FaultKind = 'kill-worker' | 'kill-api' | 'restart-redis' | 'restart-postgres';
export interface FaultPlan {
  at: number;
  kind: FaultKind;
  target: number;
}

interface ProductPlan {
  sku: string;
  price: number;
  initialStock: number;
  weight: number;
}

export interface Plan {
  seed: number;
  customers: number;
  products: ProductPlan[];
  flows: FlowPlan[];
  adjustments: AdjustPlan[];
  faults: FaultPlan[];
  durationMs: number;
}

export function makePlan(seed: number, durationMs: number, flowCount: number): Plan {
  const root = new Rng(seed);
  const r = root.fork('flows');
  const products: ProductPlan[] = [
    { sku: 'HOT', price: 24900, initialStock: 14, weight: 5 },
    { sku: 'WARM', price: 9900, initialStock: 40, weight: 4 },
    { sku: 'A', price: 4500, initialStock: 400, weight: 2 },
    { sku: 'B', price: 129900, initialStock: 400, weight: 2 },
    { sku: 'C', price: 700, initialStock: 400, weight: 2 },
    { sku: 'D', price: 59900, initialStock: 400, weight: 1 },
  ];
  const customers = 24;
  const last = durationMs - 22_000; // leave time for the last flows' payments and refunds
  const flows: FlowPlan[] = [];
  for (let i = 0; i < flowCount; i++) {
    const nLines = r.weighted([
      [1, 6],
      [2, 3],
      [3, 1],
    ] as const);
    const chosen = new Set<number>();
    while (chosen.size < nLines)
      chosen.add(r.weighted(products.map((p, k) => [k, p.weight] as const)));
    const lines = [...chosen].map((product) => ({
      product,
      quantity: r.weighted([
        [1, 6],
        [2, 3],
        [3, 1],
      ] as const),
    }));
    const next = r.weighted<Next>([
      ['abandon', 2],
      ['cancel', 2],
      ['pay_succeed', 9],
      ['pay_decline', 2],
      ['pay_abandon', 1],
      ['pay_cancel', 1],
      ['pay_cancel_late_success', 2],
    ]);
    const replay = () =>
      r.weighted<Replay>([
        ['none', 4],
        ['immediate', 2],
        ['concurrent', 3],
        ['other_api', 2],
        ['delayed', 2],
      ]);
    flows.push({
      i,
      startAt: Math.round(r.next() * last),
      customer: r.int(0, customers - 1),
      api: r.int(0, 1),
      lines,
      createReplay: replay(),
      replayDelayMs: r.int(1500, 9000),
      next,
      payReplay: replay(),
      cancelReplay: replay(),
      delivery: r.weighted<Delivery>([
        ['once', 3],
        ['twice', 2],
        ['concurrent', 3],
        ['delayed', 2],
        ['reordered', 2],
      ]),
      staleEvent: r.weighted([
        ['none', 3],
        ['payment_intent.payment_failed', 1],
        ['payment_intent.canceled', 1],
      ] as const),
      refund: r.weighted<RefundPlan>([
        ['none', 5],
        ['full', 2],
        ['partial', 2],
        ['two_partials_concurrent', 1],
        ['full_replayed', 1],
      ]),
      lateSuccessDelayMs: r.int(0, 1500),
    });
  }
  flows.sort((a, b) => a.startAt - b.startAt || a.i - b.i);

  const a = root.fork('adjustments');
  const adjustments: AdjustPlan[] = [];
  for (let at = a.int(2000, 5000); at < durationMs - 10_000; at += a.int(3000, 6000)) {
    adjustments.push({
      at,
      product: a.weighted(products.map((p, k) => [k, p.weight] as const)),
      delta: a.pick([6, 4, 3, 2, -1, -2, -3]),
      api: a.int(0, 1),
    });
  }

  // The schedule is fixed (every fault type each run, spread out so recoveries can be told apart);
  // the seed jitters the moments and picks which process of a pair dies.
  const f = root.fork('faults');
  const j = () => f.int(-1500, 1500);
  const w = f.int(0, 1);
  const schedule: FaultPlan[] = [
    { at: 9_000 + j(), kind: 'kill-worker', target: w },
    { at: 17_000 + j(), kind: 'kill-api', target: f.int(0, 1) },
    { at: 27_000 + j(), kind: 'restart-redis', target: 0 },
    { at: 37_000 + j(), kind: 'kill-worker', target: 1 - w },
    { at: 45_000 + j(), kind: 'restart-postgres', target: 0 },
    { at: 54_000 + j(), kind: 'kill-worker', target: w },
    { at: 60_000 + j(), kind: 'kill-api', target: f.int(0, 1) },
  ];
  const faults = schedule.filter((x) => x.at < durationMs - 5000);

  return { seed, customers, products, flows, adjustments, faults, durationMs };
}

export function planDigest(plan: Plan): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex').slice(0, 16);
}
