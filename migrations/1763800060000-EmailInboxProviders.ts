import { MigrationInterface, QueryRunner } from 'typeorm';

/** What JavaScript's `\s` matches (inboxKey drops it), spelled out: PostgreSQL's `[:space:]` is narrower. */
const JS_SPACE = '\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff';

/**
 * `inbox` as `inboxKey` (src/common/email.ts) now has it for the providers whose one mailbox has
 * several names: Proton (`.`, `_`, `-` ignored in the local part; proton.me, protonmail.com,
 * protonmail.ch and pm.me one mailbox), iCloud (me.com and mac.com are icloud.com) and Fastmail's
 * subdomain addressing (`anything@name.fastmail.com` is `name@fastmail.com`). Rows written before
 * kept their old key: a customer's receipt under `first.last@proton.me` and a stranger's
 * cancellations under `firstlast@proton.me` were two inboxes, and the customer no owner of the
 * second (the allowance's owner is read from the receipts). Only the rows of those domains change;
 * `down` leaves them (the old keys are no longer computed anywhere).
 */
export class EmailInboxProviders1763800060000 implements MigrationInterface {
  name = 'EmailInboxProviders1763800060000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      UPDATE email_deliveries d SET inbox = CASE
          WHEN a.domain IN ('proton.me', 'protonmail.com', 'protonmail.ch', 'pm.me')
            THEN regexp_replace(a.local, '[._-]', '', 'g') || '@proton.me'
          WHEN a.domain IN ('icloud.com', 'me.com', 'mac.com')
            THEN a.local || '@icloud.com'
          ELSE split_part(a.domain, '.', 1) || '@fastmail.com'
        END
        FROM (SELECT id,
                     split_part(regexp_replace(substring(r FROM '^(.*)@[^@]*$'), '["\\\\${JS_SPACE}]', '', 'g'), '+', 1) AS local,
                     substring(r FROM '@([^@]*)$') AS domain
                FROM (SELECT id, lower(normalize(trim(recipient), NFC)) AS r FROM email_deliveries) n) a
       WHERE a.id = d.id
         AND (a.domain IN ('proton.me', 'protonmail.com', 'protonmail.ch', 'pm.me', 'icloud.com', 'me.com', 'mac.com')
              OR a.domain ~ '^[^.]+\\.fastmail\\.com$')`);
  }

  async down(): Promise<void> {
    // the keys of before are computed nowhere now: left as they are
  }
}
