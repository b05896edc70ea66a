import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Users, and refresh-token families for rotation with reuse detection. Constraint and index
 * names are spelled out: the entities (src/users/entities, src/auth/entities) name the same ones.
 */
export class Identity1763800000000 implements MigrationInterface {
  name = 'Identity1763800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE users (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        email text NOT NULL,
        name text NOT NULL,
        role text NOT NULL DEFAULT 'customer',
        password_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT users_pkey PRIMARY KEY (id),
        CONSTRAINT users_email_check
          CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
        CONSTRAINT users_name_check CHECK (length(name) BETWEEN 1 AND 200),
        CONSTRAINT users_role_check CHECK (role IN ('customer', 'staff', 'admin'))
      )`);
    // Emails are stored normalized (trimmed, lower-cased), so a plain unique index is enough.
    await q.query(`CREATE UNIQUE INDEX users_email_key ON users (email)`);

    // A family is one sign-in: every rotation adds a token to it; revoking it ends the session.
    await q.query(`
      CREATE TABLE refresh_token_families (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        user_id uuid NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        revoked_reason text,
        CONSTRAINT refresh_token_families_pkey PRIMARY KEY (id),
        CONSTRAINT refresh_token_families_user_id_fkey
          FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
      )`);
    await q.query(
      `CREATE INDEX refresh_token_families_user_idx ON refresh_token_families (user_id)`,
    );

    // Only the SHA-256 of a refresh token is stored, never the token.
    await q.query(`
      CREATE TABLE refresh_tokens (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        token_hash text NOT NULL,
        family_id uuid NOT NULL,
        issued_at timestamptz NOT NULL,
        idle_expires_at timestamptz NOT NULL,
        spent_at timestamptz,
        CONSTRAINT refresh_tokens_pkey PRIMARY KEY (id),
        CONSTRAINT refresh_tokens_family_id_fkey
          FOREIGN KEY (family_id) REFERENCES refresh_token_families (id) ON DELETE CASCADE
      )`);
    await q.query(
      `CREATE UNIQUE INDEX refresh_tokens_token_hash_key ON refresh_tokens (token_hash)`,
    );
    await q.query(`CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE refresh_tokens`);
    await q.query(`DROP TABLE refresh_token_families`);
    await q.query(`DROP TABLE users`);
  }
}
