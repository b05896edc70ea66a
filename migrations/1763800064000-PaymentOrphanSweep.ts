import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The worker's sweep of the payment provider's lists for what the database does not account for
 * (PaymentOrphanSweep): a webhook that never arrived — an endpoint misconfigured, Stripe giving up
 * after three days of retries — left a payment, a refund or a dispute at the provider with nothing
 * here telling anyone.
 *
 * `payment_orphan_sweep`, one row: `checked_before`, the watermark — what the provider made before
 * it has been checked (the sweep's windows reach back from it: src/payments/payment-orphan-sweep.ts)
 * — starting at this migration (what came before is `npm run payments:orphans`'s); and the pass
 * under way, if any: its end (`pass_before`), the list it is on (`pass_list`) and the cursor of
 * its next page there (`pass_after`). `version` is raised by every change: a run writes over the
 * state it read, or nothing (a guarded UPDATE), so two runs at once never both move it. A restore
 * takes it back with the database, and the sweep goes over what the restore lost.
 *
 * `payment_orphan_reports`: each orphan reported, once per finding (an intent reported payable and
 * then paid is raised again), until the watermark has left its making far enough behind that no
 * window reaches it again.
 */
export class PaymentOrphanSweep1763800064000 implements MigrationInterface {
  name = 'PaymentOrphanSweep1763800064000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE payment_orphan_sweep (
        singleton boolean NOT NULL DEFAULT true,
        checked_before timestamptz NOT NULL,
        pass_before timestamptz,
        pass_list text,
        pass_after text,
        version bigint NOT NULL DEFAULT 0,
        CONSTRAINT payment_orphan_sweep_pkey PRIMARY KEY (singleton),
        CONSTRAINT payment_orphan_sweep_singleton_check CHECK (singleton),
        CONSTRAINT payment_orphan_sweep_pass_check CHECK (
          (pass_before IS NULL AND pass_list IS NULL AND pass_after IS NULL)
          OR (pass_before > checked_before AND pass_list IN ('intent', 'refund', 'dispute'))
        )
      )`);
    await q.query(
      `INSERT INTO payment_orphan_sweep (checked_before) VALUES (statement_timestamp())`,
    );
    await q.query(`
      CREATE TABLE payment_orphan_reports (
        provider_id text NOT NULL,
        finding text NOT NULL,
        made_at timestamptz NOT NULL,
        reported_at timestamptz NOT NULL,
        CONSTRAINT payment_orphan_reports_pkey PRIMARY KEY (provider_id, finding),
        CONSTRAINT payment_orphan_reports_finding_check
          CHECK (finding IN ('paid-intent', 'payable-intent', 'refund', 'dispute'))
      )`);
    await q.query(
      `CREATE INDEX payment_orphan_reports_made_at_idx ON payment_orphan_reports (made_at)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE payment_orphan_reports`);
    await q.query(`DROP TABLE payment_orphan_sweep`);
  }
}
