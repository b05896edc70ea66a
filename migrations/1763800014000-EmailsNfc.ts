import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Emails are stored in Unicode NFC (normalizeEmail), so the composed and decomposed spellings of
 * an accented address are one account. Existing rows are recomposed where that collides with no
 * other account; of several spellings of one address only the oldest account is recomposed, and
 * the others keep theirs (sign-in looks the composed spelling up, so they could not sign in
 * anyway). The CHECK holds for every row written from now on.
 */
export class EmailsNfc1763800014000 implements MigrationInterface {
  name = 'EmailsNfc1763800014000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      UPDATE users u SET email = normalize(u.email, NFC)
        FROM (SELECT DISTINCT ON (normalize(email, NFC)) id FROM users
               WHERE email IS NOT NFC NORMALIZED
               ORDER BY normalize(email, NFC), created_at, id) oldest
       WHERE u.id = oldest.id
         AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = normalize(u.email, NFC))`);
    await q.query(
      `ALTER TABLE users ADD CONSTRAINT users_email_nfc CHECK (email IS NFC NORMALIZED) NOT VALID`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users DROP CONSTRAINT users_email_nfc`);
  }
}
