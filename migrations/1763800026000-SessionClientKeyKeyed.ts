import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A session's client key was first written as a plain digest of the email and the address — one
 * anyone reading the database could reverse by trying every IPv4 address — and is now an HMAC
 * under a server secret (SessionIssuer#clientKeyOf). Every key present when this runs was written
 * before it, possibly in the old form: they are forgotten (an owner's client is then known again
 * from Redis's mark, or from the next sign-in there).
 */
export class SessionClientKeyKeyed1763800026000 implements MigrationInterface {
  name = 'SessionClientKeyKeyed1763800026000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `UPDATE refresh_token_families SET client_key = NULL WHERE client_key IS NOT NULL`,
    );
  }

  async down(): Promise<void> {
    // what was forgotten is not known here
  }
}
