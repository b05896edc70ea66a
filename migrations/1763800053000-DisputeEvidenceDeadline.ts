import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A dispute's evidence deadline (Stripe's `evidence_details.due_by`): a dispute not answered by
 * then is lost by default, so the admin view shows it and the reconciliation raises, once
 * (`reminded_at`), one still waiting for an answer when its deadline is near
 * (PaymentFinalizer#remindDisputeDeadlines).
 */
export class DisputeEvidenceDeadline1763800053000 implements MigrationInterface {
  name = 'DisputeEvidenceDeadline1763800053000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE payment_disputes ADD COLUMN evidence_due_by timestamptz,
         ADD COLUMN reminded_at timestamptz`,
    );
    // the disputes waiting for an answer not yet reminded of, by deadline (the reminder)
    await q.query(
      `CREATE INDEX payment_disputes_to_remind ON payment_disputes (evidence_due_by)
         WHERE status IN ('needs_response', 'warning_needs_response') AND reminded_at IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX payment_disputes_to_remind`);
    await q.query(
      `ALTER TABLE payment_disputes DROP COLUMN evidence_due_by, DROP COLUMN reminded_at`,
    );
  }
}
