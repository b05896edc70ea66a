import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The stock and order functions plan their statements once per connection (`plan_cache_mode =
 * force_generic_plan`). PL/pgSQL caches each statement's plan, but with the default mode a statement
 * whose parameters include an array (`= ANY(p_product_ids)`, `unnest(…)`) is re-planned for every
 * call: the generic plan's estimate never beats the custom ones, so every checkout planned its
 * reservation's and its order's statements again — 14% of PostgreSQL's CPU under the 64-SKU
 * checkout load (perf). Each statement reaches its rows by primary key or inserts, so the generic
 * plan is the custom one (index scans on inventory_items, order_items, orders, products;
 * docs/BENCHMARKS.md). Not `idempotency_keys_in_use` (the sold-out fast path's key question): its
 * join of the asked pairs with `idempotency_keys` filters `expires_at > p_now`, which a generic plan
 * estimates at a third of the table — on a table of a few thousand keys it then scanned every live
 * key by the expiry index and hashed them, where the custom plan (knowing the instant) probes the
 * primary key per pair. A later `CREATE OR REPLACE FUNCTION` drops the setting unless it names it
 * again: test/schema/generic-plans.test.ts checks it is there.
 */
const GENERIC_PLAN_FUNCTIONS = [
  'place_order(uuid, uuid, text, text, bigint, timestamptz, timestamptz, uuid[], text[], text[], int[], bigint[], bigint[], text, text[], text[], text[])',
  'reserve_stock(uuid, uuid[], int[], timestamptz)',
  'settle_stock(text, uuid, uuid[], int[], timestamptz)',
];

export class CheckoutGenericPlans1763800037000 implements MigrationInterface {
  name = 'CheckoutGenericPlans1763800037000';

  async up(q: QueryRunner): Promise<void> {
    for (const fn of GENERIC_PLAN_FUNCTIONS) {
      await q.query(`ALTER FUNCTION ${fn} SET plan_cache_mode = force_generic_plan`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const fn of GENERIC_PLAN_FUNCTIONS)
      await q.query(`ALTER FUNCTION ${fn} RESET plan_cache_mode`);
  }
}
