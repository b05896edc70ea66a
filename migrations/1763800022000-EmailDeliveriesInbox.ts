import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `inbox`: the inbox a delivery's recipient reaches (a `+tag` dropped, a Gmail local part without
 * its dots: `inboxKey` in src/common/email.ts), so the daily allowance of cancellation emails
 * counts sub-addresses of one inbox together (`victim+1@…`, `victim+2@…` registered by a script
 * are one inbox). Existing rows get theirs from the same rules here; the allowance's index moves
 * from the recipient to the inbox.
 */
export class EmailDeliveriesInbox1763800022000 implements MigrationInterface {
  name = 'EmailDeliveriesInbox1763800022000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE email_deliveries ADD COLUMN inbox text`);
    await q.query(`
      UPDATE email_deliveries SET inbox = CASE
        WHEN split_part(recipient, '@', 2) IN ('gmail.com', 'googlemail.com')
          THEN replace(split_part(split_part(recipient, '@', 1), '+', 1), '.', '') || '@gmail.com'
        ELSE split_part(split_part(recipient, '@', 1), '+', 1) || '@' || split_part(recipient, '@', 2)
      END`);
    await q.query(`DROP INDEX email_deliveries_recipient_sent_idx`);
    await q.query(
      `CREATE INDEX email_deliveries_inbox_sent_idx ON email_deliveries (inbox, kind, sent_at) WHERE status = 'sent'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX email_deliveries_inbox_sent_idx`);
    await q.query(
      `CREATE INDEX email_deliveries_recipient_sent_idx ON email_deliveries (recipient, kind, sent_at) WHERE status = 'sent'`,
    );
    await q.query(`ALTER TABLE email_deliveries DROP COLUMN inbox`);
  }
}
