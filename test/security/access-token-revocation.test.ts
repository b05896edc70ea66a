import Redis from 'ioredis';
import { createHash } from 'node:crypto';
import { PasswordHasher } from '../../src/auth/password-hasher';
import { PendingRevocations } from '../../src/auth/pending-revocations';
import { RefreshTokenRepository } from '../../src/auth/refresh-token.repository';
import { CLOCK_SKEW_MS } from '../../src/auth/revoked-sessions';
import { TEST_PASSWORD, createAdmin, login, registerCustomer } from '../support/auth';
import type { HttpClient } from '../support/http';
import { PrivateRedis } from '../support/private-redis';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

// Issue 10, finding 7: an access token stops working within seconds once its session
// (refresh-token family) is revoked by logout, a password change or a detected reuse — in every
// API process — while other sessions keep working.

/** How soon a revoked session's access token must be refused. */
const WITHIN_MS = 2000;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const familyClaim = (accessToken: string): string =>
  (JSON.parse(Buffer.from(accessToken.split('.')[1], 'base64url').toString()) as { fam: string })
    .fam;

/** GET /v1/me with the token until it answers `status` (at most `withinMs`). */
function meStatusBecomes(
  http: HttpClient,
  token: string,
  status: number,
  withinMs = WITHIN_MS,
): Promise<number> {
  return waitFor(
    `GET /v1/me to answer ${status}`,
    async () => (await http.get('/v1/me', { token })).status,
    {
      until: (s) => s === status,
      timeoutMs: withinMs,
      intervalMs: 50,
    },
  );
}

/**
 * An operator's statement in a transaction kept open 300 ms before its COMMIT; when it ran (the
 * database's clock): what the revocations it causes are stamped after.
 */
async function operatorsStatement(app: TestApp, sql: string, email: string): Promise<Date> {
  const client = await app.db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ at: Date }>(
      `${sql} RETURNING statement_timestamp() AS at`,
      [email],
    );
    await client.query('SELECT pg_sleep(0.3)');
    await client.query('COMMIT');
    return rows[0].at;
  } finally {
    client.release();
  }
}

const meStatus = async (http: HttpClient, token: string) =>
  (await http.get('/v1/me', { token })).status;

describe('security: access tokens of revoked sessions are refused (issue 10, finding 7)', () => {
  let a: TestApp;
  let b: TestApp; // a second API process on the same database and Redis prefix
  beforeAll(async () => {
    a = await bootTestApp();
    b = await bootTestApp({ db: a.db, env: { REDIS_KEY_PREFIX: a.config.redis.keyPrefix } });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('after logout, in every process; the same user’s other session and other users unaffected', async () => {
    const s = await registerCustomer(a.http);
    const otherSession = await login(a.http, s.email, s.password);
    const otherUser = await registerCustomer(a.http);
    expect(await meStatus(b.http, s.accessToken)).toBe(200);

    expect((await a.http.post('/v1/auth/logout', { refreshToken: s.refreshToken })).status).toBe(
      204,
    );
    expect(await meStatusBecomes(a.http, s.accessToken, 401)).toBe(401);
    expect(await meStatusBecomes(b.http, s.accessToken, 401)).toBe(401);
    const refused = await b.http.get('/v1/me', { token: s.accessToken });
    expect(refused.body.code).toBe('TOKEN_INVALID');
    expect(refused.headers.get('content-type')).toMatch(/application\/problem\+json/);

    for (const http of [a.http, b.http]) {
      expect(await meStatus(http, otherSession.accessToken)).toBe(200);
      expect(await meStatus(http, otherUser.accessToken)).toBe(200);
    }
  });

  it('after a password change: every session of the user, but not a sign-in made afterwards', async () => {
    const s = await registerCustomer(a.http);
    const second = await login(a.http, s.email, s.password);
    const rotated = await a.http.post('/v1/auth/refresh', { refreshToken: second.refreshToken });
    expect(rotated.status).toBe(200);
    const otherUser = await registerCustomer(a.http);

    const newPassword = 'a-brand-new-password';
    const changed = await b.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword },
      { token: s.accessToken },
    );
    expect(changed.status).toBe(204);
    for (const token of [s.accessToken, second.accessToken, rotated.body.accessToken]) {
      expect(await meStatusBecomes(a.http, token, 401)).toBe(401);
      expect(await meStatusBecomes(b.http, token, 401)).toBe(401);
    }
    // a sign-in right after the change (same second) is a new session and works everywhere
    const fresh = await login(a.http, s.email, newPassword);
    expect(await meStatus(a.http, fresh.accessToken)).toBe(200);
    expect(await meStatus(b.http, fresh.accessToken)).toBe(200);
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);
  });

  it("a password change whose COMMIT fails (its answer lost with the connection) has its sessions' access tokens refused everywhere", async () => {
    const s = await registerCustomer(a.http);
    expect(await meStatus(b.http, s.accessToken)).toBe(200);
    // COMMIT itself fails, after every statement of the change ran: as when the connection goes
    // before its answer arrives (the outcome is unknown to the app, which answers 5xx)
    const trigger = `fail_commit_${s.user.id.replace(/-/g, '')}`;
    await a.db.pool.query(`
      CREATE FUNCTION ${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.user_id = '${s.user.id}' AND NEW.revoked_reason = 'password-changed' THEN
          RAISE EXCEPTION 'the connection went at COMMIT' USING ERRCODE = '08006';
        END IF;
        RETURN NEW;
      END $$`);
    await a.db.pool.query(
      `CREATE CONSTRAINT TRIGGER ${trigger} AFTER UPDATE ON refresh_token_families
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${trigger}()`,
    );
    try {
      const res = await a.http.post(
        '/v1/me/password',
        { currentPassword: s.password, newPassword: 'another-long-password-1' },
        { token: s.accessToken },
      );
      expect(res.status).toBeGreaterThanOrEqual(500);
    } finally {
      await a.db.pool.query(`DROP TRIGGER ${trigger} ON refresh_token_families`);
      await a.db.pool.query(`DROP FUNCTION ${trigger}()`);
    }
    expect(await meStatusBecomes(b.http, s.accessToken, 401)).toBe(401);

    // The change rolled back, and the sessions it had marked are revoked all the same
    // (PendingRevocations, once the database takes it): the mark no longer lapses into a live
    // session. A refresh is refused, its token neither spent nor, shown again, taken for a
    // stolen token's reuse.
    await a.app.get(PendingRevocations).settled();
    const tokenRow = async () =>
      (
        await a.db.pool.query(
          `SELECT t.spent_at, f.revoked_at, f.revoked_reason FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id WHERE t.token_hash = $1`,
          [sha256(s.refreshToken)],
        )
      ).rows[0] as {
        spent_at: Date | null;
        revoked_at: Date | null;
        revoked_reason: string | null;
      };
    for (const http of [a.http, b.http]) {
      const refreshed = await http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
      expect(refreshed.status).toBe(401);
      expect(refreshed.body.code).toBe('REFRESH_TOKEN_INVALID');
    }
    expect(await tokenRow()).toMatchObject({ spent_at: null, revoked_reason: 'password-changed' });
    expect((await tokenRow()).revoked_at).not.toBeNull();
    // and the password is still the old one
    expect(
      (await a.http.post('/v1/auth/login', { email: s.email, password: s.password })).status,
    ).toBe(200);
  });

  it('a sign-in with the old password still being verified when the change commits gets no session', async () => {
    const s = await registerCustomer(a.http);
    const families = async () =>
      (
        await a.db.pool.query(
          `SELECT count(*)::int AS n FROM refresh_token_families WHERE user_id = $1 AND revoked_at IS NULL`,
          [s.user.id],
        )
      ).rows[0].n as number;
    // the attacker's login has read the old hash and is inside argon2 …
    const hasher = a.app.get(PasswordHasher);
    const verify = hasher.verify.bind(hasher);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const spy = jest.spyOn(hasher, 'verify').mockImplementationOnce(async (hash, password) => {
      entered();
      await released;
      return verify(hash, password);
    });
    try {
      const attacker = a.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD });
      await inside;
      // … when the owner changes the password (in the other process), revoking every session
      const changed = await b.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'owner-took-it-back-42' },
        { token: s.accessToken },
      );
      expect(changed.status).toBe(204);
      release();
      const late = await attacker;
      expect([late.status, late.body.code]).toEqual([401, 'INVALID_CREDENTIALS']);
    } finally {
      spy.mockRestore();
    }
    expect(await families()).toBe(0);
    // and the new password is the one that works (a rehash of the old one never lands over it)
    expect(
      (await a.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD })).status,
    ).toBe(401);
    expect(
      (await a.http.post('/v1/auth/login', { email: s.email, password: 'owner-took-it-back-42' }))
        .status,
    ).toBe(200);
  });

  it("after a role lowered by an operator's SQL (the only way to lower one): every session of the account, everywhere — an admin's token no longer carries its permissions", async () => {
    const admin = await createAdmin(a);
    const other = await createAdmin(a);
    const orders = (token: string, http = a.http) =>
      http.get('/v1/admin/orders', { token }).then((r) => r.status);
    expect(await orders(admin.accessToken)).toBe(200);
    // in a transaction the operator keeps open a while: the revocation is stamped at its COMMIT
    // (the polls read back a couple of minutes only: stamped at the UPDATE, a longer one was lost)
    const updatedAt = await operatorsStatement(
      a,
      `UPDATE users SET role = 'customer' WHERE email = $1`,
      admin.email,
    );
    for (const http of [a.http, b.http]) {
      // (read from the database's record, every 2 s: no process wrote a mark)
      expect(await meStatusBecomes(http, admin.accessToken, 401, 8000)).toBe(401);
      expect(await orders(admin.accessToken, http)).toBe(401);
    }
    const refreshed = await a.http.post('/v1/auth/refresh', { refreshToken: admin.refreshToken });
    expect(refreshed.status).toBe(401);
    const revoked = await a.db.pool.query(
      `SELECT DISTINCT revoked_reason FROM refresh_token_families f JOIN users u ON u.id = f.user_id WHERE u.email = $1`,
      [admin.email],
    );
    expect(revoked.rows).toEqual([{ revoked_reason: 'role-changed' }]);
    const stamped = await a.db.pool.query(
      `SELECT min(f.revoked_at) AS at FROM refresh_token_families f JOIN users u ON u.id = f.user_id WHERE u.email = $1`,
      [admin.email],
    );
    expect(stamped.rows[0].at.getTime() - updatedAt.getTime()).toBeGreaterThanOrEqual(300);
    // signed in again: a customer's session, with a customer's rights
    const again = await login(a.http, admin.email, admin.password);
    expect(await orders(again.accessToken)).toBe(403);
    // a write that leaves the role as it was ends nothing; another account is untouched
    await a.db.pool.query(`UPDATE users SET role = role, name = 'x' WHERE email = $1`, [
      admin.email,
    ]);
    expect(await meStatus(b.http, again.accessToken)).toBe(200);
    expect(await orders(other.accessToken, b.http)).toBe(200);
  });

  it("after a password reset by an operator's SQL (the only way to reset a customer's): every session ends everywhere and no client stays the owner's; a sign-in's rehash ends nothing", async () => {
    const s = await registerCustomer(a.http);
    const second = await login(a.http, s.email, s.password);
    const other = await registerCustomer(a.http);
    const newPassword = 'the-operator-set-this-one';
    const hash = await a.app.get(PasswordHasher).hash(newPassword);
    const updatedAt = await operatorsStatement(
      a,
      `UPDATE users SET password_hash = '${hash}' WHERE email = $1`,
      s.email,
    );
    for (const http of [a.http, b.http]) {
      // (read from the database's record every 2 s: no process wrote a mark)
      for (const token of [s.accessToken, second.accessToken]) {
        expect(await meStatusBecomes(http, token, 401, 8000)).toBe(401);
      }
    }
    const refreshed = await b.http.post('/v1/auth/refresh', { refreshToken: second.refreshToken });
    expect([refreshed.status, refreshed.body.code]).toEqual([401, 'REFRESH_TOKEN_INVALID']);
    const families = await a.db.pool.query<{
      revoked_reason: string;
      revoked_at: Date;
      client_key: string | null;
    }>(
      `SELECT revoked_reason, revoked_at, client_key FROM refresh_token_families f JOIN users u ON u.id = f.user_id WHERE u.email = $1`,
      [s.email],
    );
    expect(families.rows).toHaveLength(2);
    for (const f of families.rows) {
      expect([f.revoked_reason, f.client_key]).toEqual(['password-reset', null]);
      // stamped at COMMIT, as for a role change
      expect(f.revoked_at.getTime() - updatedAt.getTime()).toBeGreaterThanOrEqual(300);
    }
    // the new password opens a session; the old one is refused; another account is untouched
    const fresh = await login(a.http, s.email, newPassword);
    expect(await meStatus(b.http, fresh.accessToken)).toBe(200);
    expect(
      (await a.http.post('/v1/auth/login', { email: s.email, password: s.password })).status,
    ).toBe(401);
    expect(await meStatus(b.http, other.accessToken)).toBe(200);
    // a new hash of the same password (a sign-in's upgrade: same epoch) ends nothing
    const rehash = await a.app.get(PasswordHasher).hash(newPassword);
    await a.db.pool.query(
      `BEGIN; SELECT set_config('shop.password_rehash', 'on', true);
       UPDATE users SET password_hash = '${rehash}' WHERE email = '${s.email}'; COMMIT`,
    );
    expect(await meStatus(b.http, fresh.accessToken)).toBe(200);
    const live = await a.db.pool.query(
      `SELECT 1 FROM refresh_token_families f JOIN users u ON u.id = f.user_id
        WHERE u.email = $1 AND f.revoked_at IS NULL AND f.client_key IS NOT NULL`,
      [s.email],
    );
    expect(live.rowCount).toBe(1);
  });

  it("after the account is deleted by an operator's SQL (an erasure, staff off-boarded): its sessions end everywhere, the queue board's bearer access too; nothing else ends", async () => {
    const admin = await createAdmin(a);
    const other = await createAdmin(a);
    const orders = (token: string, http = a.http) =>
      http.get('/v1/admin/orders', { token }).then((r) => r.status);
    const board = (token: string, http = a.http) =>
      http
        .get('/admin/queues/api/queues', { headers: { authorization: `Bearer ${token}` } })
        .then((r) => r.status);
    expect(await orders(admin.accessToken)).toBe(200);
    expect(await board(admin.accessToken, b.http)).toBe(200);
    // kept open a while: the end is stamped at COMMIT, as for a role change
    const deletedAt = await operatorsStatement(
      a,
      `DELETE FROM users WHERE email = $1`,
      admin.email,
    );
    for (const http of [a.http, b.http]) {
      // (read from the database's record every 2 s: the families went with the account)
      await waitFor(
        'the admin route to refuse the deleted account',
        () => orders(admin.accessToken, http),
        {
          until: (s) => s === 401,
          timeoutMs: 8000,
          intervalMs: 50,
        },
      );
      const write = await http.post(
        '/v1/admin/categories',
        { name: 'gone', slug: `gone-${Date.now()}` },
        { token: admin.accessToken },
      );
      expect([write.status, write.body.code]).toEqual([401, 'TOKEN_INVALID']);
      expect(await board(admin.accessToken, http)).toBe(401);
    }
    const stamped = await a.db.pool.query<{ at: Date }>(
      `SELECT min(deleted_at) AS at FROM deleted_sessions WHERE family_id = $1`,
      [familyClaim(admin.accessToken)],
    );
    expect(stamped.rows[0].at.getTime() - deletedAt.getTime()).toBeGreaterThanOrEqual(300);
    expect(await orders(other.accessToken, b.http)).toBe(200);
    // the purge of ended sessions leaves no tombstone for what it deletes
    const ended = await registerCustomer(a.http);
    await a.db.pool.query(
      `UPDATE refresh_token_families SET expires_at = now() - interval '40 days', created_at = now() - interval '41 days'
        WHERE user_id = $1`,
      [ended.user.id],
    );
    const purged = await a.app
      .get(RefreshTokenRepository)
      .purgeEnded(new Date(Date.now() - 30 * 86_400_000));
    expect(purged).toBeGreaterThanOrEqual(1);
    const left = await a.db.pool.query(`SELECT 1 FROM deleted_sessions WHERE family_id = $1`, [
      familyClaim(ended.accessToken),
    ]);
    expect(left.rowCount).toBe(0);
  });

  it('after a detected refresh-token reuse: every access token of that family', async () => {
    const s = await registerCustomer(a.http);
    const otherSession = await login(a.http, s.email, s.password);
    const rotated = await a.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(rotated.status).toBe(200);
    const reuse = await b.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(reuse.status).toBe(401);
    expect(reuse.body.code).toBe('REFRESH_TOKEN_REUSED');

    for (const token of [s.accessToken, rotated.body.accessToken]) {
      expect(await meStatusBecomes(a.http, token, 401)).toBe(401);
      expect(await meStatusBecomes(b.http, token, 401)).toBe(401);
    }
    expect(await meStatus(a.http, otherSession.accessToken)).toBe(200);
  });

  it('keeps the revocation mark in Redis under REDIS_KEY_PREFIX, living no longer than an access token', async () => {
    const s = await registerCustomer(a.http);
    expect((await a.http.post('/v1/auth/logout', { refreshToken: s.refreshToken })).status).toBe(
      204,
    );
    const family = (
      await a.db.pool.query<{ family_id: string }>(
        `SELECT family_id FROM refresh_tokens WHERE token_hash = $1`,
        [sha256(s.refreshToken)],
      )
    ).rows[0].family_id;
    expect(familyClaim(s.accessToken)).toBe(family);
    const redis = new Redis(a.config.redis.url);
    try {
      const keys = await redis.keys(`${a.config.redis.keyPrefix}:*${family}*`);
      expect(keys).toHaveLength(1);
      const ttl = await redis.ttl(keys[0]);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(a.config.jwt.accessTtlSeconds + CLOCK_SKEW_MS / 1000);
    } finally {
      redis.disconnect();
    }
  });
});

describe('security: access-token revocation with Redis down (fail open, remembered locally)', () => {
  let redis: PrivateRedis;
  let redisDown = false;
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    a = await bootTestApp({ env: { REDIS_URL: redis.url } });
    b = await bootTestApp({
      db: a.db,
      env: { REDIS_URL: redis.url, REDIS_KEY_PREFIX: a.config.redis.keyPrefix },
    });
  });
  afterAll(async () => {
    if (redisDown) await redis.up(); // closing the apps waits on their Redis clients
    await b?.close();
    await a?.close();
    await redis?.down();
  });

  it('serves valid tokens, refuses what this process revoked, and tells the others once Redis is back', async () => {
    const s = await registerCustomer(a.http);
    const otherUser = await registerCustomer(a.http);
    await redis.down();
    redisDown = true;

    const started = Date.now();
    expect(await meStatus(a.http, otherUser.accessToken)).toBe(200); // fail open, no 401 for all
    expect((await a.http.post('/v1/auth/logout', { refreshToken: s.refreshToken })).status).toBe(
      204,
    );
    expect(await meStatus(a.http, s.accessToken)).toBe(401); // remembered by the revoking process
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);
    expect(Date.now() - started).toBeLessThan(5000); // no request waited long on Redis
    // the other process, its Redis check failing, reads the record every 2 s: within seconds it
    // refuses the logged-out token too, Redis still down (API.md: "within seconds")
    expect(await meStatusBecomes(b.http, s.accessToken, 401, 10_000)).toBe(401);
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);

    await redis.up();
    redisDown = false;
    // the mark that could not be written is written once Redis answers again (the client
    // reconnects within ~2 s, then the pending mark is retried)
    const mark = `${a.config.redis.keyPrefix}:revoked-session:${familyClaim(s.accessToken)}`;
    const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await waitFor(
        'the mark written once Redis is back',
        async () => {
          await probe.connect().catch(() => undefined);
          return probe.exists(mark);
        },
        {
          until: (n) => n === 1,
          timeoutMs: 10_000,
          retryErrors: true,
        },
      );
    } finally {
      probe.disconnect();
    }
    expect(await meStatus(b.http, s.accessToken)).toBe(401);
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);
  });
  it('Redis back without its data: the marks are written again from the database, and a process that never saw them refuses', async () => {
    const s = await registerCustomer(a.http);
    const otherUser = await registerCustomer(a.http);
    expect((await a.http.post('/v1/auth/logout', { refreshToken: s.refreshToken })).status).toBe(
      204,
    );
    const mark = `${a.config.redis.keyPrefix}:revoked-session:${familyClaim(s.accessToken)}`;
    const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await probe.connect();
      // written before the logout answers, or (a loaded machine past REVOCATION_REDIS_TIMEOUT_MS)
      // by the retry a second later: either way it is there before Redis restarts
      await waitFor('the mark written', () => probe.exists(mark), {
        until: (n) => n === 1,
        timeoutMs: 10_000,
      });
      probe.disconnect();

      // restarted empty (no persistence): b never checked this token, so only Redis could tell it
      await redis.down();
      redisDown = true;
      await redis.up();
      redisDown = false;
      await probe.connect();
      const ttl = await waitFor('the mark written again', () => probe.pttl(mark), {
        until: (ms) => ms > 0,
        timeoutMs: 10_000,
        retryErrors: true,
      });
      expect(ttl).toBeLessThanOrEqual(a.config.jwt.accessTtlSeconds * 1000 + CLOCK_SKEW_MS);
    } finally {
      probe.disconnect();
    }
    expect(await meStatusBecomes(b.http, s.accessToken, 401, 5_000)).toBe(401);
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);
  });
});

describe('security: access-token revocation with Redis up but refusing writes (maxmemory, READONLY replica)', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    const env = { REDIS_URL: redis.url, RATE_LIMIT_ENABLED: 'false' };
    a = await bootTestApp({ env });
    b = await bootTestApp({
      db: a.db,
      env: { ...env, REDIS_KEY_PREFIX: a.config.redis.keyPrefix },
    });
  });
  afterAll(async () => {
    await admin?.config('SET', 'maxmemory', '0').catch(() => undefined);
    admin?.disconnect();
    await b?.close();
    await a?.close();
    await redis?.down();
  });

  it('a logout on one process ends the access token on another within seconds, though no mark can be written', async () => {
    const s = await registerCustomer(a.http);
    const otherUser = await registerCustomer(a.http);
    expect(await meStatus(b.http, s.accessToken)).toBe(200); // b asked Redis: not revoked

    // Redis keeps answering reads but refuses every write (OOM under noeviction)
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1');
    await expect(admin.set('probe', '1')).rejects.toThrow(/OOM/);

    expect((await a.http.post('/v1/auth/logout', { refreshToken: s.refreshToken })).status).toBe(
      204,
    );
    const mark = `${a.config.redis.keyPrefix}:revoked-session:${familyClaim(s.accessToken)}`;
    expect(await admin.exists(mark)).toBe(0); // the mark was refused: Redis tells b "not revoked"
    // b reads the record every 2 s whatever Redis says (API.md: "within seconds")
    expect(await meStatusBecomes(b.http, s.accessToken, 401, 6_000)).toBe(401);
    expect(await meStatus(b.http, otherUser.accessToken)).toBe(200);
  });
});
