import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { QueryRunner } from 'typeorm';
import { IdempotencyOwnBodyClearsHash1763800067000 } from '../../migrations/1763800067000-IdempotencyOwnBodyClearsHash';
import type { TransactionHost } from '../../src/database/transaction-host';
import {
  INLINE_BODY_MAX_BYTES,
  IdempotencyRepository,
  type IdempotencyScope,
} from '../../src/idempotency/idempotency.repository';
import { migrate } from '../support/databases';
import { migrateUpTo } from '../support/partial-migrations';
import {
  createEmptyDatabase,
  createTestDatabase,
  type TestDatabase,
} from '../support/test-database';

/**
 * The build before IdempotencyBodies, serving beside this one (a rolling deploy, a canary, a
 * rollback without `migration:revert`): its statements exactly as commit 5596e1a9 sends them
 * (src/idempotency/idempotency.repository.ts there) — begin's takeover, and finish's TypeORM
 * `update` as TypeORM writes it. Neither knows `response_body_hash`.
 */
const OLD_BEGIN_SQL = `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
       VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, 'in_progress', $6::timestamptz, $7::timestamptz)
       ON CONFLICT (principal, key) DO UPDATE
         SET method = EXCLUDED.method, route = EXCLUDED.route, fingerprint = EXCLUDED.fingerprint,
             state = 'in_progress', response_status = NULL, response_body = NULL,
             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
       WHERE idempotency_keys.expires_at <= statement_timestamp() OR idempotency_keys.state = 'in_progress'
       RETURNING created_at`;
const OLD_FINISH_SQL = `UPDATE "idempotency_keys" SET "state" = $1, "response_status" = $2, "response_body" = $3 WHERE ("principal" = $4 AND "key" = $5 AND "state" = $6 AND "created_at" = $7)`;

/** migrations/1763800066000-IdempotencyBodies.ts's `down`: the bodies copied back into their records. */
const BODIES_DOWN_SQL = `
      UPDATE idempotency_keys k SET response_body = b.body, response_body_hash = NULL
        FROM idempotency_bodies b WHERE b.hash = k.response_body_hash`;

const DAY_MS = 24 * 60 * 60 * 1000;

type Sql = Pick<Pool, 'query'> | PoolClient;

/** The repository over `sql`: the statements it sends itself (find, begin, finish), as the app sends them. */
const repositoryOn = (sql: Sql) => {
  const query = async (text: string, params: unknown[] = []) =>
    (await sql.query(text, params)).rows;
  return new IdempotencyRepository({
    query,
    queryRerunnable: query,
  } as unknown as TransactionHost);
};

/** A checkout's answer: an order of 40 lines, stored by hash (over INLINE_BODY_MAX_BYTES). */
const checkoutAnswer = JSON.stringify({
  id: randomUUID(),
  status: 'PENDING_PAYMENT',
  items: Array.from({ length: 40 }, (_, i) => ({
    productId: randomUUID(),
    name: `Product ${i}`,
    quantity: 1,
    unitPrice: { amount: 1000, currency: 'INR' },
  })),
});
const paymentAnswer = JSON.stringify({ clientSecret: 'pi_123_secret_456', status: 'pending' });
const CHECKOUT = "the checkout's order";
const PAYMENT = 'the payment answer';

/**
 * An Idempotency-Key whose earlier answer (a checkout's, by this build: by hash) has expired, used
 * again for a payment start that the old build serves; this build reads the record.
 */
describe('an idempotency record the previous build rewrites is read as that build wrote it', () => {
  let db: TestDatabase;
  let fresh: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await fresh?.drop();
    fresh = undefined;
  });
  afterAll(async () => {
    await db?.drop();
  });

  const newScope = (): IdempotencyScope => {
    const route = `/v1/orders/${randomUUID()}/payment`;
    return {
      principal: `user:${randomUUID()}`,
      key: `reuse-${randomUUID()}`,
      method: 'POST',
      route,
      fingerprint: 'f-payment',
      sameBody: ['f-payment'],
    };
  };

  /** This build's checkout, its answer stored by hash (completeOnCommit's statement). */
  const checkoutByHash = async (sql: Sql, scope: IdempotencyScope) => {
    expect(Buffer.byteLength(checkoutAnswer)).toBeGreaterThan(INLINE_BODY_MAX_BYTES);
    const now = new Date();
    await sql.query(IdempotencyRepository.COMPLETE_BY_HASH_SQL, [
      scope.principal,
      scope.key,
      'POST',
      '/v1/orders',
      'f-checkout',
      201,
      checkoutAnswer,
      now,
      new Date(now.getTime() + DAY_MS),
    ]);
  };

  /** The key's record past its expiry (24 h later). */
  const expire = (sql: Sql, scope: IdempotencyScope) =>
    sql.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'
        WHERE principal = $1 AND key = $2`,
      [scope.principal, scope.key],
    );

  const checkoutByHashExpired = async (sql: Sql, scope: IdempotencyScope) => {
    await checkoutByHash(sql, scope);
    await expire(sql, scope);
  };

  /** The old build's begin on the key: its claim's token. */
  const oldBegin = async (sql: Sql, scope: IdempotencyScope): Promise<Date> => {
    const now = new Date();
    const { rows } = await sql.query<{ created_at: Date }>(OLD_BEGIN_SQL, [
      scope.principal,
      scope.key,
      scope.method,
      scope.route,
      scope.fingerprint,
      now,
      new Date(now.getTime() + DAY_MS),
    ]);
    expect(rows).toHaveLength(1);
    return rows[0].created_at;
  };

  const oldFinish = (
    sql: Sql,
    scope: IdempotencyScope,
    token: Date,
    answer: { status: number; body: string | null },
  ) =>
    sql.query(OLD_FINISH_SQL, [
      'completed',
      answer.status,
      answer.body,
      scope.principal,
      scope.key,
      'in_progress',
      token,
    ]);

  /** A body as the assertions name it (a failure shows no 3 KB of JSON). */
  const named = (body: string | null) =>
    body === paymentAnswer ? PAYMENT : body === checkoutAnswer ? CHECKOUT : body;

  /** What this build replays for the key: through the repository's lookup, and through the claim function. */
  const replayed = async (sql: Sql, scope: IdempotencyScope) => {
    const found = await repositoryOn(sql).find(scope);
    const [claim] = IdempotencyRepository.claimStatements(scope.principal, scope.key);
    const { rows } = await sql.query(claim.sql, claim.params);
    const { stored } = IdempotencyRepository.claimed([rows]);
    return {
      find: found && {
        state: found.state,
        status: found.stored.status,
        body: named(found.stored.body),
      },
      claim: stored && { route: stored.route, status: stored.status, body: named(stored.body) },
    };
  };

  it("replays the old build's answer, not the expired one its record still named by hash", async () => {
    const scope = newScope();
    await checkoutByHashExpired(db.pool, scope);
    const token = await oldBegin(db.pool, scope);
    await oldFinish(db.pool, scope, token, { status: 201, body: paymentAnswer });

    expect(await replayed(db.pool, scope)).toEqual({
      find: { state: 'completed', status: 201, body: PAYMENT },
      claim: { route: scope.route, status: 201, body: PAYMENT },
    });
  });

  it("replays an old build's answer without a body (a 204) as one, not the expired body", async () => {
    const scope = newScope();
    await checkoutByHashExpired(db.pool, scope);
    const token = await oldBegin(db.pool, scope);
    await oldFinish(db.pool, scope, token, { status: 204, body: null });

    expect(await replayed(db.pool, scope)).toEqual({
      find: { state: 'completed', status: 204, body: null },
      claim: { route: scope.route, status: 204, body: null },
    });
  });

  it("never calls the trigger's function from this build's own writes (begin, both finishes, both completes, the purge, IdempotencyBodies' down)", async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      // any call fails the statement (rolled back with the rest at the end)
      await client.query(`
        CREATE OR REPLACE FUNCTION idempotency_keys_own_body_clears_hash() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the trigger''s function was called'; END $$`);
      const records = repositoryOn(client);
      const scope = newScope();
      // completeOnCommit's two statements
      await checkoutByHashExpired(client, scope);
      const inline = { ...newScope(), route: '/v1/orders' };
      const now = new Date();
      await client.query(IdempotencyRepository.COMPLETE_INLINE_SQL, [
        inline.principal,
        inline.key,
        'POST',
        inline.route,
        'f',
        201,
        '{"small":true}',
        now,
        new Date(now.getTime() + DAY_MS),
      ]);
      // begin takes over the expired record stored by hash; finish inline; again, finish by hash
      for (const body of [paymentAnswer, checkoutAnswer]) {
        const claim = await records.begin(scope, new Date(), new Date(Date.now() + DAY_MS));
        if (claim.token === null) throw new Error('begin did not take the expired record over');
        await records.finish(scope, claim.token, { status: 201, body });
        expect((await records.find(scope))?.stored.body).toBe(body);
        await expire(client, scope);
      }
      await records.purgeAbandoned(new Date());
      await client.query(BODIES_DOWN_SQL);
      // (the old build's takeover of such a record does call it)
      const old = newScope();
      await checkoutByHashExpired(client, old);
      await expect(oldBegin(client, old)).rejects.toThrow("the trigger's function was called");
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('mends, as it runs, the records an old build took over or completed before it; leaves this build’s own', async () => {
    fresh = await createEmptyDatabase();
    await migrateUpTo(fresh.url, 1763800066000);
    const [takenOver, rewritten, bodiless, own] = [newScope(), newScope(), newScope(), newScope()];
    for (const scope of [takenOver, rewritten, bodiless])
      await checkoutByHashExpired(fresh.pool, scope);
    await checkoutByHash(fresh.pool, own);
    const takenOverToken = await oldBegin(fresh.pool, takenOver);
    await oldFinish(fresh.pool, rewritten, await oldBegin(fresh.pool, rewritten), {
      status: 201,
      body: paymentAnswer,
    });
    await oldFinish(fresh.pool, bodiless, await oldBegin(fresh.pool, bodiless), {
      status: 204,
      body: null,
    });

    migrate(fresh.url); // this migration, through the real CLI

    await oldFinish(fresh.pool, takenOver, takenOverToken, { status: 201, body: paymentAnswer });
    expect(await replayed(fresh.pool, takenOver)).toMatchObject({
      find: { body: PAYMENT },
      claim: { body: PAYMENT },
    });
    expect(await replayed(fresh.pool, rewritten)).toMatchObject({
      find: { body: PAYMENT },
      claim: { body: PAYMENT },
    });
    expect(await replayed(fresh.pool, own)).toMatchObject({
      find: { body: CHECKOUT },
      claim: { route: '/v1/orders', body: CHECKOUT },
    });
    // an old build's answer without a body looks like this build's own record by hash: not told
    // apart, left (and not reached by today's routes: only the storage webhook answers without
    // one, to an `ip:` principal, whose routes have no answer over 2 KB to store by hash)
    expect(await replayed(fresh.pool, bodiless)).toMatchObject({
      find: { status: 204, body: CHECKOUT },
    });
  });

  it('down drops the trigger and its function; up brings them back', async () => {
    const runner = { query: (sql: string) => db.pool.query(sql) } as unknown as QueryRunner;
    const migration = new IdempotencyOwnBodyClearsHash1763800067000();
    const present = async () =>
      (
        await db.pool.query<{ trigger: boolean; fn: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM pg_trigger
                           WHERE tgname = 'idempotency_keys_own_body_clears_hash') AS trigger,
                  to_regprocedure('idempotency_keys_own_body_clears_hash()') IS NOT NULL AS fn`,
        )
      ).rows[0];
    const scope = newScope();
    await migration.down(runner);
    try {
      expect(await present()).toEqual({ trigger: false, fn: false });
      // without them, the stale hash wins
      await checkoutByHashExpired(db.pool, scope);
      await oldFinish(db.pool, scope, await oldBegin(db.pool, scope), {
        status: 201,
        body: paymentAnswer,
      });
      expect(await replayed(db.pool, scope)).toMatchObject({ find: { body: CHECKOUT } });
    } finally {
      await migration.up(runner);
    }
    expect(await present()).toEqual({ trigger: true, fn: true });
    // and up mends the record written meanwhile
    expect(await replayed(db.pool, scope)).toMatchObject({
      find: { body: PAYMENT },
      claim: { body: PAYMENT },
    });
  });
});
