import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The accounts 1763800014000-EmailsNfc left with a decomposed email (a second spelling of an
 * address another account holds) cannot sign in — sign-in looks the composed spelling up — and
 * cannot change their password either: every new version of their row fails `users_email_nfc`,
 * so the one control that ends all of an account's sessions answered 409 and ended none. Their
 * live sessions are revoked here (`revoked_reason = 'email-not-nfc'`): an account that cannot
 * sign in keeps no session. Its data stays for an operator to merge with the other spelling's.
 */
export class LegacyEmailSessions1763800019000 implements MigrationInterface {
  name = 'LegacyEmailSessions1763800019000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      UPDATE refresh_token_families f
         SET revoked_at = now(), revoked_reason = 'email-not-nfc'
        FROM users u
       WHERE u.id = f.user_id AND u.email IS NOT NFC NORMALIZED AND f.revoked_at IS NULL`);
  }

  async down(): Promise<void> {
    // a revocation is not undone
  }
}
