import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * This shop's identity: one row, its `id` a uuid made here — by each database the migrations run
 * on, so two deployments with databases of their own (a second shop, a staging) never share it,
 * and kept by a restore of this database (pg_dump/pg_restore, or a physical backup) as any row
 * is. Every payment intent the app makes carries it in its metadata (`shop`): Stripe sends every
 * endpoint of an account all of the account's events, and an intent of another deployment on the
 * same account (its metadata naming an order id as ours do) is told from ours by it
 * (PaymentFinalizer, `npm run payments:orphans`). A copy of this database made to run beside it (a
 * staging cloned from production) shares it until given its own, before it takes a payment:
 * `UPDATE shop_identity SET id = gen_random_uuid();` (README). `singleton` is the primary key and
 * only ever true: a second row is refused.
 */
export class ShopIdentity1763800063000 implements MigrationInterface {
  name = 'ShopIdentity1763800063000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE shop_identity (
        singleton boolean NOT NULL DEFAULT true,
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        CONSTRAINT shop_identity_pkey PRIMARY KEY (singleton),
        CONSTRAINT shop_identity_singleton_check CHECK (singleton)
      )`);
    await q.query(`INSERT INTO shop_identity DEFAULT VALUES`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE shop_identity`);
  }
}
