import { SecurityEvents } from '../../src/auth/security-events';
import { Algorithm, hash } from '@node-rs/argon2';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { TransactionHost } from '../../src/database/transaction-host';
import { UserRepository } from '../../src/users/user.repository';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../../src/auth/demo-credentials';
import { DemoSeeder } from '../../src/seed/demo.seeder';
import { RefreshTokenRepository } from '../../src/auth/refresh-token.repository';
import {
  TEST_PASSWORD,
  createAdmin,
  createStaff,
  login,
  registerCustomer,
  withAuthProbe,
} from '../support/auth';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString());
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Hand-made JWTs for the refusal cases. */
function forge(header: object, payload: object, secret: string, hmac = 'sha256'): string {
  const body = `${b64(header)}.${b64(payload)}`;
  const sig = hmac === 'none' ? '' : createHmac(hmac, secret).update(body).digest('base64url');
  return `${body}.${sig}`;
}

describe('auth: accounts, tokens, sessions, permissions', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ module: withAuthProbe });
  });
  afterAll(async () => {
    await t?.close();
  });

  const familyOf = async (refreshToken: string) =>
    (
      await t.db.pool.query(
        `SELECT f.id, f.revoked_at, f.revoked_reason FROM refresh_tokens t
           JOIN refresh_token_families f ON f.id = t.family_id WHERE t.token_hash = $1`,
        [sha256(refreshToken)],
      )
    ).rows[0];

  describe('accounts', () => {
    it('a password typed on another keyboard (precomposed vs combining marks) signs in, and changes', async () => {
      const email = `viet.${randomUUID()}@example.com`;
      const precomposed = 'Ph\u1edf-b\u00f2-secret'; // "Phở-bò-secret", as most phone keyboards type it
      const combining = precomposed.normalize('NFD'); // as a desktop keyboard may send it
      expect(combining).not.toBe(precomposed);
      const reg = await t.http.post('/v1/auth/register', {
        email,
        password: precomposed,
        name: 'Viet',
      });
      expect(reg.status).toBe(201);
      const login = await t.http.post('/v1/auth/login', { email, password: combining });
      expect(login.status).toBe(200);
      const change = await t.http.post(
        '/v1/me/password',
        { currentPassword: combining, newPassword: 'Ｎew-ｐassword-1' }, // full-width letters
        { token: login.body.accessToken },
      );
      expect(change.status).toBe(204);
      const again = await t.http.post('/v1/auth/login', { email, password: 'New-password-1' });
      expect(again.status).toBe(200);
      // eight characters typed, four once normalized (e + combining acute → é): too short, as a
      // new password too
      const short = 'e\u0301'.repeat(4);
      const refused = await t.http.post('/v1/auth/register', {
        email: `short.${randomUUID()}@example.com`,
        password: short,
        name: 'S',
      });
      expect([refused.status, refused.body.errors]).toEqual([
        400,
        [{ field: 'password', message: 'password must be between 8 and 128 characters long' }],
      ]);
      const change2 = await t.http.post(
        '/v1/me/password',
        { currentPassword: 'New-password-1', newPassword: short },
        { token: again.body.accessToken },
      );
      expect(change2.status).toBe(400);
      // a long passphrase: 104 characters precomposed, 136 as a decomposing keyboard types it —
      // taken in either form everywhere (its length is the hashed form's)
      const passphrase = `${'Phở bò tái chín '.repeat(6)}nước dùng`.slice(0, 104);
      const decomposed = passphrase.normalize('NFD');
      expect([[...passphrase].length, [...decomposed].length > 128]).toEqual([104, true]);
      const longEmail = `long.${randomUUID()}@example.com`;
      const registered = await t.http.post('/v1/auth/register', {
        email: longEmail,
        password: decomposed,
        name: 'Viet',
      });
      expect(registered.status).toBe(201);
      const signedIn = await t.http.post('/v1/auth/login', {
        email: longEmail,
        password: passphrase,
      });
      expect(signedIn.status).toBe(200);
      expect(
        (await t.http.post('/v1/auth/login', { email: longEmail, password: decomposed })).status,
      ).toBe(200);
      const changed = await t.http.post(
        '/v1/me/password',
        { currentPassword: decomposed, newPassword: passphrase.slice(0, 100).normalize('NFD') },
        { token: signedIn.body.accessToken },
      );
      expect(changed.status).toBe(204);
      // a password given to be checked is bounded as typed only, at 512 (one set before passwords
      // were normalized may be longer in NFKC: it must still sign in — a wrong one is a 401)
      const tooLong = 'e\u0301\u0301\u0301\u0301\u0301'.repeat(100);
      const overLong = await t.http.post('/v1/auth/login', { email: longEmail, password: tooLong });
      expect([overLong.status, overLong.body.errors?.[0]?.field]).toEqual([400, 'password']);
      for (const password of ['p'.repeat(129), '\u2026'.repeat(128)]) {
        const res = await t.http.post('/v1/auth/login', { email: longEmail, password });
        expect(res.status).toBe(401);
      }
    });

    it('registers, logs in, reads /me, refreshes and logs out', async () => {
      const email = `  Asha.${randomUUID()}@Example.COM `;
      const normalized = email.trim().toLowerCase();
      const reg = await t.http.post('/v1/auth/register', {
        email,
        password: TEST_PASSWORD,
        name: ' Asha ',
      });
      expect(reg.status).toBe(201);
      expect(reg.body).toEqual({
        user: { id: expect.any(String), email: normalized, name: 'Asha', role: 'customer' },
        accessToken: expect.any(String),
        refreshToken: expect.any(String),
        expiresIn: 900,
        deviceToken: expect.stringMatching(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/),
      });

      const signedIn = await t.http.post('/v1/auth/login', {
        email: normalized.toUpperCase(),
        password: TEST_PASSWORD,
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.user).toEqual(reg.body.user);
      const me = await t.http.get('/v1/me', { token: signedIn.body.accessToken });
      expect(me.status).toBe(200);
      expect(me.body).toEqual({
        id: reg.body.user.id,
        email: normalized,
        name: 'Asha',
        role: 'customer',
      });

      const refreshed = await t.http.post('/v1/auth/refresh', {
        refreshToken: signedIn.body.refreshToken,
      });
      expect(refreshed.status).toBe(200);
      expect(refreshed.body.refreshToken).not.toBe(signedIn.body.refreshToken);
      expect(refreshed.body.user).toEqual(reg.body.user);
      expect((await t.http.get('/v1/me', { token: refreshed.body.accessToken })).status).toBe(200);

      const out = await t.http.post('/v1/auth/logout', {
        refreshToken: refreshed.body.refreshToken,
      });
      expect(out.status).toBe(204);
      expect(out.text).toBe('');
      const after = await t.http.post('/v1/auth/refresh', {
        refreshToken: refreshed.body.refreshToken,
      });
      expect(after.status).toBe(401);
      expect((await familyOf(refreshed.body.refreshToken)).revoked_reason).toBe('logout');
      // the other session (from register) is untouched by this logout
      expect(
        (await t.http.post('/v1/auth/refresh', { refreshToken: reg.body.refreshToken })).status,
      ).toBe(200);
    });

    it('stores argon2id hashes showing parameters at or above the OWASP minimum', async () => {
      const s = await registerCustomer(t.http);
      const row = (
        await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [s.user.id])
      ).rows[0];
      const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(row.password_hash);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThanOrEqual(19456);
      expect(Number(m![2])).toBeGreaterThanOrEqual(2);
      expect(Number(m![3])).toBeGreaterThanOrEqual(1);
      expect(row.password_hash).not.toContain(TEST_PASSWORD);
    });

    it('re-hashes on login when the stored hash was made with weaker parameters', async () => {
      const s = await registerCustomer(t.http);
      const weak = await hash(TEST_PASSWORD, {
        algorithm: Algorithm.Argon2id,
        memoryCost: 4096,
        timeCost: 1,
        parallelism: 1,
      });
      await t.db.pool.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [s.user.id, weak]);
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD })).status,
      ).toBe(200);
      const row = (
        await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [s.user.id])
      ).rows[0];
      expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      // the upgraded hash still verifies the same password
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD })).status,
      ).toBe(200);
    });

    it('sign-ins at once over a hash being upgraded queue on the row, none deadlocks (each took it FOR SHARE, then updated it)', async () => {
      const s = await registerCustomer(t.http);
      const weak = await hash(TEST_PASSWORD, {
        algorithm: Algorithm.Argon2id,
        memoryCost: 4096,
        timeCost: 1,
        parallelism: 1,
      });
      await t.db.pool.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [s.user.id, weak]);
      // a transaction PostgreSQL aborted as deadlocked is retried (and logged so) by TransactionHost
      const host: { logger: { warn: (m: string) => void } } = t.app.get<{
        logger: { warn: (m: string) => void };
      }>(TransactionHost);
      const warn = jest.spyOn(host.logger, 'warn');
      // the two transactions made to overlap: each, having its lock, waits until the other has one
      // too (the old FOR SHARE) or is seen waiting on the row in PostgreSQL (a lock that excludes
      // the other) — no timer: on a loaded machine the second may come late, never unobserved
      const users = t.app.get(UserRepository);
      const lock = users.lockPassword.bind(users);
      let holding = 0;
      let bothHold!: () => void;
      const both = new Promise<void>((resolve) => (bothHold = resolve));
      let settled = false;
      void both.then(() => (settled = true));
      const othersWaiting = waitFor(
        'the other sign-in to hold the row too, or to wait for it',
        async () => {
          if (settled) return true;
          const { rows } = await t.db.pool.query(
            `SELECT 1 FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM "users"%'`,
          );
          return rows.length > 0 ? true : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 10 },
      );
      const spy = jest.spyOn(users, 'lockPassword').mockImplementation(async (...args) => {
        const hash = await lock(...args);
        if (++holding === 2) bothHold();
        await Promise.race([both, othersWaiting]);
        return hash;
      });
      try {
        const signIns = await Promise.all(
          Array.from({ length: 2 }, () =>
            t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD }),
          ),
        );
        expect(signIns.map((r) => r.status)).toEqual([200, 200]);
        expect(warn.mock.calls.map(([m]) => m).filter((m) => /40P01/.test(m))).toEqual([]);
      } finally {
        spy.mockRestore();
        warn.mockRestore();
      }
    });

    it('a hash made before passwords were normalized: the password as typed signs in once, then the hash holds its NFKC form', async () => {
      const s = await registerCustomer(t.http);
      const typed = 'Pho\u031b\u0309-secret-9'; // combining marks, as a desktop keyboard may send it
      const legacy = await hash(typed, {
        algorithm: Algorithm.Argon2id,
        memoryCost: 19456,
        timeCost: 2,
        parallelism: 1,
      });
      await t.db.pool.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [
        s.user.id,
        legacy,
      ]);
      // before its first sign-in, only the form it was made from verifies
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: typed.normalize('NFC') }))
          .status,
      ).toBe(401);
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: typed })).status,
      ).toBe(200);
      const upgraded = (
        await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [s.user.id])
      ).rows[0].password_hash as string;
      expect(upgraded).not.toBe(legacy);
      expect(upgraded.split('$')[4]).toHaveLength(32); // a 24-byte salt: holds the NFKC form
      // from then on, the password on any keyboard
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: typed.normalize('NFC') }))
          .status,
      ).toBe(200);
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: typed })).status,
      ).toBe(200);
    });

    it('refuses passwords outside 8..128 characters with 400', async () => {
      for (const password of ['short', 'seven77', 'p'.repeat(129)]) {
        const res = await t.http.post('/v1/auth/register', {
          email: `${randomUUID()}@x.io`,
          password,
          name: 'x',
        });
        expect(res.status).toBe(400);
        expect(res.body.code).toBe('VALIDATION_FAILED');
        expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(['password']);
      }
      expect(
        (
          await t.http.post('/v1/auth/register', {
            email: `${randomUUID()}@x.io`,
            password: 'p'.repeat(128),
            name: 'x',
          })
        ).status,
      ).toBe(201);
    });

    it('answers 409 EMAIL_TAKEN for a duplicate email, also under concurrent registrations', async () => {
      const email = `${randomUUID()}@x.io`;
      const spellings = [email, email.toUpperCase(), ` ${email} `, email, email.toUpperCase()];
      const results = await Promise.all(
        spellings.map((e) =>
          t.http.post('/v1/auth/register', { email: e, password: TEST_PASSWORD, name: 'x' }),
        ),
      );
      expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409]);
      for (const r of results.filter((x) => x.status === 409)) {
        expect(r.body).toMatchObject({ code: 'EMAIL_TAKEN', status: 409 });
      }
      const rows = await t.db.pool.query(`SELECT count(*)::int AS n FROM users WHERE email = $1`, [
        email,
      ]);
      expect(rows.rows[0].n).toBe(1);
    });

    it('treats the composed and decomposed forms of an accented email as one account', async () => {
      const local = `jos\u00e9.${randomUUID()}`; // é precomposed (NFC)
      const composed = `${local}@x.io`;
      const decomposed = composed.normalize('NFD'); // e + U+0301, as some keyboards send it
      expect(decomposed).not.toBe(composed);
      const reg = await t.http.post('/v1/auth/register', {
        email: decomposed,
        password: TEST_PASSWORD,
        name: 'x',
      });
      expect(reg.status).toBe(201);
      expect(reg.body.user.email).toBe(composed);
      const twin = await t.http.post('/v1/auth/register', {
        email: composed.toUpperCase(),
        password: TEST_PASSWORD,
        name: 'y',
      });
      expect(twin.status).toBe(409);
      expect(twin.body).toMatchObject({ code: 'EMAIL_TAKEN' });
      const signIn = await t.http.post('/v1/auth/login', {
        email: composed,
        password: TEST_PASSWORD,
      });
      expect(signIn.status).toBe(200);
      // the table itself refuses a decomposed spelling, whoever writes it
      await expect(
        t.db.pool.query(`UPDATE users SET email = $1 WHERE id = $2`, [
          decomposed,
          reg.body.user.id,
        ]),
      ).rejects.toMatchObject({ code: '23514' });
    });

    it('refuses role, userId or any unknown field in the body (no mass assignment)', async () => {
      for (const extra of [{ role: 'admin' }, { userId: randomUUID() }, { id: randomUUID() }]) {
        const res = await t.http.post('/v1/auth/register', {
          email: `${randomUUID()}@x.io`,
          password: TEST_PASSWORD,
          name: 'x',
          ...extra,
        });
        expect(res.status).toBe(400);
        expect(res.body.errors).toEqual([
          expect.objectContaining({ field: Object.keys(extra)[0] }),
        ]);
      }
      const s = await registerCustomer(t.http);
      const pw = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'another-password', role: 'admin' },
        { token: s.accessToken },
      );
      expect(pw.status).toBe(400);
    });

    it('answers an unknown email and a wrong password identically (401 INVALID_CREDENTIALS)', async () => {
      const s = await registerCustomer(t.http);
      const wrong = await t.http.post('/v1/auth/login', {
        email: s.email,
        password: 'not-the-password',
      });
      const unknown = await t.http.post('/v1/auth/login', {
        email: `${randomUUID()}@x.io`,
        password: 'not-the-password',
      });
      for (const r of [wrong, unknown]) {
        expect(r.status).toBe(401);
        expect(r.headers.get('content-type')).toMatch(/problem\+json/);
      }
      const { requestId: _a, ...wrongBody } = wrong.body;
      const { requestId: _b, ...unknownBody } = unknown.body;
      expect(unknownBody).toEqual(wrongBody);
      expect(wrongBody.code).toBe('INVALID_CREDENTIALS');
    });

    it('a password change revokes every session even past 65,535 of them (one array parameter, not one each)', async () => {
      const s = await registerCustomer(t.http);
      await t.db.pool.query(
        `INSERT INTO refresh_token_families (user_id, created_at, expires_at)
         SELECT $1, now(), now() + interval '1 day' FROM generate_series(1, 70000)`,
        [s.user.id],
      );
      const changed = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'a-brand-new-password' },
        { token: s.accessToken },
      );
      expect(changed.status).toBe(204);
      const { rows } = await t.db.pool.query(
        `SELECT count(*)::int AS live FROM refresh_token_families WHERE user_id = $1 AND revoked_at IS NULL`,
        [s.user.id],
      );
      expect(rows[0].live).toBe(0);
      expect((await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken })).status).toBe(
        401,
      );
      // the 70,000 sessions made up here go (the real one, with its tokens, stays revoked): the
      // file's app reads every revocation of the last two minutes again every 2 s
      // (RevokedSessions' poll), and these made each read 70,000 rows for the rest of the file
      // (~3 CPU-s parsing them, a fifth of the file's)
      await t.db.pool.query(
        `DELETE FROM refresh_token_families f WHERE user_id = $1
            AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = f.id)`,
        [s.user.id],
      );
    });

    it('changes the password: needs the current one, then revokes every session', async () => {
      const s = await registerCustomer(t.http);
      const other = await login(t.http, s.email, TEST_PASSWORD);
      const wrong = await t.http.post(
        '/v1/me/password',
        { currentPassword: 'not-the-password', newPassword: 'a-brand-new-password' },
        { token: s.accessToken },
      );
      expect(wrong.status).toBe(403);
      expect(wrong.body.code).toBe('CURRENT_PASSWORD_INCORRECT');
      const weak = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'short' },
        { token: s.accessToken },
      );
      expect(weak.status).toBe(400);

      const changed = await t.http.post(
        '/v1/me/password',
        { currentPassword: TEST_PASSWORD, newPassword: 'a-brand-new-password' },
        { token: s.accessToken },
      );
      expect(changed.status).toBe(204);
      for (const token of [s.refreshToken, other.refreshToken]) {
        const r = await t.http.post('/v1/auth/refresh', { refreshToken: token });
        expect(r.status).toBe(401);
      }
      const families = await t.db.pool.query(
        `SELECT revoked_reason FROM refresh_token_families WHERE user_id = $1`,
        [s.user.id],
      );
      expect(families.rows.map((r) => r.revoked_reason)).toEqual([
        'password-changed',
        'password-changed',
      ]);
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD })).status,
      ).toBe(401);
      expect(
        (await t.http.post('/v1/auth/login', { email: s.email, password: 'a-brand-new-password' }))
          .status,
      ).toBe(200);
      expect(
        (await t.http.post('/v1/me/password', { currentPassword: 'x', newPassword: 'y'.repeat(8) }))
          .status,
      ).toBe(401);
    });
  });

  describe('access tokens', () => {
    let secret: string;
    let good: { sub: string; email: string; role: string; fam: string };
    let refreshToken: string;
    const now = () => Math.floor(Date.now() / 1000);

    beforeAll(async () => {
      secret = t.config.jwt.secret as string;
      const s = await registerCustomer(t.http);
      const claims = decode(s.accessToken.split('.')[1]);
      good = { sub: claims.sub, email: claims.email, role: claims.role, fam: claims.fam };
      refreshToken = s.refreshToken;
    });

    const base = () => ({
      ...good,
      typ: 'access',
      iss: t.config.jwt.issuer,
      aud: t.config.jwt.audience,
      iat: now(),
      exp: now() + 60,
    });
    const expect401 = async (token: string) => {
      const res = await t.http.get('/v1/me', { token });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/problem\+json/);
      expect(['TOKEN_INVALID', 'UNAUTHENTICATED']).toContain(res.body.code);
    };

    it('are HS256 JWTs with iss, aud, sub, exp (access TTL) and typ access', async () => {
      const s = await registerCustomer(t.http);
      const [header, payload] = s.accessToken.split('.').slice(0, 2).map(decode);
      expect(header.alg).toBe('HS256');
      expect(payload).toMatchObject({
        sub: s.user.id,
        iss: t.config.jwt.issuer,
        aud: t.config.jwt.audience,
        typ: 'access',
        role: 'customer',
      });
      expect(payload.exp - payload.iat).toBe(t.config.jwt.accessTtlSeconds);
      expect(s.expiresIn).toBe(t.config.jwt.accessTtlSeconds);
    });

    it('accepts a correctly made token (control for the refusals below)', async () => {
      expect(
        (await t.http.get('/v1/me', { token: forge({ alg: 'HS256', typ: 'JWT' }, base(), secret) }))
          .status,
      ).toBe(200);
    });
    it('refuses alg none', () =>
      expect401(forge({ alg: 'none', typ: 'JWT' }, base(), secret, 'none')));
    it('refuses another algorithm (HS512)', () =>
      expect401(forge({ alg: 'HS512', typ: 'JWT' }, base(), secret, 'sha512')));
    it('refuses another algorithm (HS384)', () =>
      expect401(forge({ alg: 'HS384', typ: 'JWT' }, base(), secret, 'sha384')));
    it('refuses a wrong audience', () =>
      expect401(forge({ alg: 'HS256' }, { ...base(), aud: 'someone-else' }, secret)));
    it('refuses a wrong issuer', () =>
      expect401(forge({ alg: 'HS256' }, { ...base(), iss: 'evil' }, secret)));
    it('refuses an expired token', () =>
      expect401(forge({ alg: 'HS256' }, { ...base(), iat: now() - 120, exp: now() - 60 }, secret)));
    it('refuses a token of another type', () =>
      expect401(forge({ alg: 'HS256' }, { ...base(), typ: 'refresh' }, secret)));
    it('refuses a refresh token used as an access token', () => expect401(refreshToken));
    it('refuses a token signed with another key', () =>
      expect401(forge({ alg: 'HS256' }, base(), 'x'.repeat(40))));
    it('refuses a token whose payload was altered', async () => {
      const [h, , sig] = forge({ alg: 'HS256' }, base(), secret).split('.');
      await expect401(`${h}.${b64({ ...base(), role: 'admin' })}.${sig}`);
    });
    it('refuses garbage, another scheme and a missing header', async () => {
      await expect401('not.a.jwt');
      await expect401('garbage');
      const basic = await t.http.get('/v1/me', {
        headers: { authorization: `Basic ${b64({ a: 1 })}` },
      });
      expect(basic.status).toBe(401);
      const none = await t.http.get('/v1/me');
      expect(none.status).toBe(401);
      expect(none.body.code).toBe('UNAUTHENTICATED');
    });
  });

  describe('refresh tokens', () => {
    it('are 256-bit opaque strings stored only as their SHA-256', async () => {
      const s = await registerCustomer(t.http);
      expect(Buffer.from(s.refreshToken, 'base64url').length).toBeGreaterThanOrEqual(32);
      const byHash = await t.db.pool.query(`SELECT 1 FROM refresh_tokens WHERE token_hash = $1`, [
        sha256(s.refreshToken),
      ]);
      expect(byHash.rowCount).toBe(1);
      const anywhere = await t.db.pool.query(
        `SELECT 1 FROM refresh_tokens r WHERE position($1 in r::text) > 0`,
        [s.refreshToken],
      );
      expect(anywhere.rowCount).toBe(0);
    });

    it('revokes the whole family when a spent refresh token is presented again', async () => {
      const s = await registerCustomer(t.http);
      const first = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
      expect(first.status).toBe(200);

      // the old token, stolen, is replayed after its owner refreshed
      const replay = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
      expect(replay.status).toBe(401);
      expect(replay.body.code).toBe('REFRESH_TOKEN_REUSED');
      // the owner's current token is now useless too: both have to sign in again
      const owner = await t.http.post('/v1/auth/refresh', {
        refreshToken: first.body.refreshToken,
      });
      expect(owner.status).toBe(401);
      expect((await familyOf(s.refreshToken)).revoked_reason).toBe('reuse-detected');
      // a fresh sign-in starts a new, valid family
      const again = await login(t.http, s.email, TEST_PASSWORD);
      expect(
        (await t.http.post('/v1/auth/refresh', { refreshToken: again.refreshToken })).status,
      ).toBe(200);
    });

    it('a spent token replayed after its owner logged out alarms once (the family marked reuse-detected); replays after that are refused quietly', async () => {
      const events = jest.spyOn(t.app.get(SecurityEvents), 'record');
      try {
        const s = await registerCustomer(t.http);
        const first = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
        expect(first.status).toBe(200);
        expect(
          (
            await t.http.post(
              '/v1/auth/logout',
              { refreshToken: first.body.refreshToken },
              { token: first.body.accessToken },
            )
          ).status,
        ).toBe(204);
        const reuses = () =>
          events.mock.calls.filter(([e]) => e.event === 'refresh_token_reuse').length;
        for (let i = 0; i < 5; i++) {
          const replay = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
          expect([replay.status, replay.body.code]).toEqual([401, 'REFRESH_TOKEN_REUSED']);
        }
        expect(reuses()).toBe(1);
        // naming the address the spent token came from: the thief's or the owner's
        expect(
          events.mock.calls.find(([e]) => e.event === 'refresh_token_reuse')?.[0],
        ).toMatchObject({ client: '127.0.0.1' });
        expect((await familyOf(s.refreshToken)).revoked_reason).toBe('reuse-detected');
      } finally {
        events.mockRestore();
      }
    });

    it("a logout with a spent token is a reuse too: the owner's session ends as reuse-detected, the theft alarms once, the logout still answers 204", async () => {
      const events = jest.spyOn(t.app.get(SecurityEvents), 'record');
      try {
        const s = await registerCustomer(t.http);
        const first = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
        expect(first.status).toBe(200);
        // the thief, holding a copy of the spent token, logs the owner out with it — twice
        for (let i = 0; i < 2; i++) {
          const out = await t.http.post('/v1/auth/logout', { refreshToken: s.refreshToken });
          expect(out.status).toBe(204);
        }
        expect((await familyOf(s.refreshToken)).revoked_reason).toBe('reuse-detected');
        const reuses = events.mock.calls.filter(([e]) => e.event === 'refresh_token_reuse');
        expect(reuses.map(([e]) => e)).toEqual([
          expect.objectContaining({ userId: s.user.id, client: '127.0.0.1' }),
        ]);
        // the owner's tokens are ended, both kinds
        expect(
          (await t.http.post('/v1/auth/refresh', { refreshToken: first.body.refreshToken })).status,
        ).toBe(401);
        expect((await t.http.get('/v1/me', { token: first.body.accessToken })).status).toBe(401);
        // a logout with the live token (no reuse) is a plain logout, without alarm
        const again = await login(t.http, s.email, TEST_PASSWORD);
        events.mockClear();
        expect(
          (await t.http.post('/v1/auth/logout', { refreshToken: again.refreshToken })).status,
        ).toBe(204);
        expect((await familyOf(again.refreshToken)).revoked_reason).toBe('logout');
        expect(events.mock.calls.filter(([e]) => e.event === 'refresh_token_reuse')).toEqual([]);
      } finally {
        events.mockRestore();
      }
    });

    /** Every session that ended before `before`, batch after batch: how many went. */
    const purgeAll = async (before: Date) => {
      for (let purged = 0; ;) {
        const n = await t.app.get(RefreshTokenRepository).purgeEnded(before);
        if (n === 0) return purged;
        purged += n;
      }
    };

    it('purges an ended family, its tokens first, and nothing of a live one', async () => {
      const ended = await registerCustomer(t.http);
      let token = ended.refreshToken;
      for (let i = 0; i < 3; i++)
        token = (await t.http.post('/v1/auth/refresh', { refreshToken: token })).body.refreshToken;
      const live = await registerCustomer(t.http);
      const family = (await familyOf(token)).id;
      await t.db.pool.query(
        `UPDATE refresh_token_families SET expires_at = now() - interval '31 days' WHERE id = $1`,
        [family],
      );
      const repo = t.app.get(RefreshTokenRepository);
      const before = new Date(Date.now() - 30 * 86_400_000);
      const count = async (f: string) =>
        (
          await t.db.pool.query(
            `SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = $1`,
            [f],
          )
        ).rows[0].n;
      expect(await count(family)).toBe(4);
      // (the file's other tests leave ended sessions too: purged until none is left)
      expect(await purgeAll(before)).toBeGreaterThanOrEqual(1);
      expect(await repo.purgeEnded(before)).toBe(0);
      expect(await count(family)).toBe(0);
      expect(await familyOf(token)).toBeUndefined();
      const liveFamily = (await familyOf(live.refreshToken)).id;
      expect(await count(liveFamily)).toBe(1);
    });

    it('purges a family left idle 30 days (within its lifetime), and not one whose newest token is still usable', async () => {
      const before = new Date(Date.now() - 30 * 86_400_000);
      const idle = await registerCustomer(t.http);
      const idleNext = (await t.http.post('/v1/auth/refresh', { refreshToken: idle.refreshToken }))
        .body.refreshToken;
      const idleFamily = (await familyOf(idleNext)).id;
      // signed in, refreshed once, then never again: both tokens idled out 31 days ago
      await t.db.pool.query(
        `UPDATE refresh_tokens SET idle_expires_at = now() - interval '31 days' WHERE family_id = $1`,
        [idleFamily],
      );
      const used = await registerCustomer(t.http);
      const usedNext = (await t.http.post('/v1/auth/refresh', { refreshToken: used.refreshToken }))
        .body.refreshToken;
      const usedFamily = (await familyOf(usedNext)).id;
      // its first (spent) token idled out long ago; the newest is usable
      await t.db.pool.query(
        `UPDATE refresh_tokens SET idle_expires_at = now() - interval '40 days' WHERE family_id = $1 AND spent_at IS NOT NULL`,
        [usedFamily],
      );
      // both opened 45 days ago (within a lifetime raised to 90 days)
      await t.db.pool.query(
        `UPDATE refresh_token_families SET created_at = now() - interval '45 days', expires_at = now() + interval '45 days' WHERE id = ANY($1)`,
        [[idleFamily, usedFamily]],
      );
      expect(await purgeAll(before)).toBeGreaterThanOrEqual(1);
      expect(await familyOf(idleNext)).toBeUndefined();
      expect((await familyOf(usedNext)).id).toBe(usedFamily);
      expect((await t.http.post('/v1/auth/refresh', { refreshToken: usedNext })).status).toBe(200);
    });

    it('lets exactly one of 10 concurrent refreshes with one token win; the others count as reuse', async () => {
      // Documented behaviour (AuthService): the guarded UPDATE picks one winner (200, new pair).
      // The others find the token spent, which cannot be told apart from a replayed copy: 401
      // REFRESH_TOKEN_REUSED, and the family, the winner's new token included, is revoked.
      const s = await registerCustomer(t.http);
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken }),
        ),
      );
      const winners = results.filter((r) => r.status === 200);
      expect(winners).toHaveLength(1);
      const losers = results.filter((r) => r.status !== 200);
      expect(losers).toHaveLength(9);
      for (const r of losers)
        expect(r.body).toMatchObject({ status: 401, code: 'REFRESH_TOKEN_REUSED' });

      // the database saw exactly one rotation: the original token (spent) and one successor
      const family = await familyOf(s.refreshToken);
      const tokens = await t.db.pool.query(
        `SELECT spent_at IS NOT NULL AS spent FROM refresh_tokens WHERE family_id = $1 ORDER BY issued_at`,
        [family.id],
      );
      expect(tokens.rows.map((r) => r.spent)).toEqual([true, false]);
      expect(family.revoked_reason).toBe('reuse-detected');
      expect(
        (await t.http.post('/v1/auth/refresh', { refreshToken: winners[0].body.refreshToken }))
          .status,
      ).toBe(401);
    });

    it('expires after the idle timeout and after the family lifetime', async () => {
      const idle = await registerCustomer(t.http);
      await t.db.pool.query(
        `UPDATE refresh_tokens SET idle_expires_at = now() - interval '1 second' WHERE token_hash = $1`,
        [sha256(idle.refreshToken)],
      );
      const r1 = await t.http.post('/v1/auth/refresh', { refreshToken: idle.refreshToken });
      expect(r1.status).toBe(401);
      expect(r1.body.code).toBe('REFRESH_TOKEN_INVALID');

      const old = await registerCustomer(t.http);
      const fresh = await t.http.post('/v1/auth/refresh', { refreshToken: old.refreshToken });
      expect(fresh.status).toBe(200);
      await t.db.pool.query(
        `UPDATE refresh_token_families SET expires_at = now() - interval '1 second' WHERE id = $1`,
        [(await familyOf(old.refreshToken)).id],
      );
      const r2 = await t.http.post('/v1/auth/refresh', { refreshToken: fresh.body.refreshToken });
      expect(r2.status).toBe(401);
      expect(r2.body.code).toBe('REFRESH_TOKEN_INVALID');
    });

    it("an access token never outlives its session's absolute end: a refresh a few seconds before it gets a token for those seconds, not a full lifetime", async () => {
      const claimsOf = (token: string) =>
        JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as {
          iat: number;
          exp: number;
        };
      const s = await registerCustomer(t.http);
      const full = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
      expect(full.body.expiresIn).toBe(t.config.jwt.accessTtlSeconds);
      const fullClaims = claimsOf(full.body.accessToken);
      expect(fullClaims.exp - fullClaims.iat).toBe(t.config.jwt.accessTtlSeconds);
      await t.db.pool.query(
        `UPDATE refresh_token_families SET expires_at = now() + interval '20 seconds' WHERE id = $1`,
        [(await familyOf(s.refreshToken)).id],
      );
      const last = await t.http.post('/v1/auth/refresh', { refreshToken: full.body.refreshToken });
      expect(last.status).toBe(200);
      expect(last.body.expiresIn).toBeGreaterThanOrEqual(1);
      expect(last.body.expiresIn).toBeLessThanOrEqual(20);
      const { iat, exp } = claimsOf(last.body.accessToken);
      expect(exp - iat).toBe(last.body.expiresIn);
      // and it is a token the API takes, for that long
      expect((await t.http.get('/v1/me', { token: last.body.accessToken })).status).toBe(200);
    });

    it('sets the idle timeout and the lifetime from the configuration', async () => {
      const s = await registerCustomer(t.http);
      const row = (
        await t.db.pool.query(
          `SELECT extract(epoch FROM t.idle_expires_at - t.issued_at)::int AS idle,
                  extract(epoch FROM f.expires_at - f.created_at)::int AS life
             FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id
            WHERE t.token_hash = $1`,
          [sha256(s.refreshToken)],
        )
      ).rows[0];
      expect(row).toEqual({
        idle: t.config.jwt.refreshIdleSeconds,
        life: t.config.jwt.refreshTtlSeconds,
      });
    });

    it('refuses unknown tokens with REFRESH_TOKEN_INVALID; logout of an unknown token is still 204', async () => {
      const r = await t.http.post('/v1/auth/refresh', { refreshToken: 'never-issued' });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('REFRESH_TOKEN_INVALID');
      expect((await t.http.post('/v1/auth/logout', { refreshToken: 'never-issued' })).status).toBe(
        204,
      );
      expect((await t.http.post('/v1/auth/refresh', {})).status).toBe(400);
    });

    it('a refresh that meets a revocation committing meanwhile is invalid, and so is its retry — no "reuse", no theft alarm', async () => {
      const s = await registerCustomer(t.http);
      const family = await familyOf(s.refreshToken);
      // a logout elsewhere (or a password change), its transaction still open on the family row
      const revoker = await t.db.pool.connect();
      try {
        await revoker.query('BEGIN');
        await revoker.query(
          `UPDATE refresh_token_families SET revoked_at = now(), revoked_reason = 'logout' WHERE id = $1`,
          [family.id],
        );
        const refreshing = t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
        await untilWaitingOnLocks(t.db.pool, 'the refresh to wait on the family being revoked', {
          matching: '%refresh_token_families%',
        });
        await revoker.query('COMMIT');
        const raced = await refreshing;
        expect([raced.status, raced.body.code]).toEqual([401, 'REFRESH_TOKEN_INVALID']);
      } finally {
        revoker.release();
      }
      // the same token again (a retry, a second tab): the session was ended, not stolen
      const retry = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
      expect([retry.status, retry.body.code]).toEqual([401, 'REFRESH_TOKEN_INVALID']);
      expect((await familyOf(s.refreshToken)).revoked_reason).toBe('logout');
    });
  });

  describe('authorization', () => {
    it('denies by default: routes without @Public() need a token, public ones do not', async () => {
      for (const path of [
        '/v1/me',
        '/v1/__auth-probe/whoami',
        '/v1/orders',
        '/v1/admin/orders',
        '/v1/cart',
      ]) {
        const res = await t.http.get(path);
        expect([path, res.status]).toEqual([path, 401]);
      }
      expect((await t.http.post('/v1/__auth-probe/orders', {})).status).toBe(401);
      for (const path of ['/health/live', '/docs-json']) {
        expect([path, (await t.http.get(path)).status]).toEqual([path, 200]);
      }
    });

    it('puts the principal on the request (userId, email, role, permissions, session)', async () => {
      const s = await registerCustomer(t.http);
      const res = await t.http.get('/v1/__auth-probe/whoami', { token: s.accessToken });
      expect(res.body).toEqual({
        userId: s.user.id,
        email: s.user.email,
        role: 'customer',
        permissions: [],
        sessionId: (await familyOf(s.refreshToken)).id,
      });
    });

    it('checks permissions, not role names: customer 403, staff per permission, admin allowed', async () => {
      const customer = await registerCustomer(t.http);
      const staff = await createStaff(t);
      const admin = await createAdmin(t);
      const readAll = (token?: string) => t.http.get('/v1/__auth-probe/orders', { token });
      const refund = (token?: string) => t.http.post('/v1/__auth-probe/refunds', {}, { token });

      const forbidden = await readAll(customer.accessToken);
      expect(forbidden.status).toBe(403);
      expect(forbidden.body.code).toBe('FORBIDDEN');
      expect((await refund(customer.accessToken)).status).toBe(403);
      expect((await readAll(staff.accessToken)).status).toBe(200);
      expect((await refund(staff.accessToken)).status).toBe(403);
      expect((await readAll(admin.accessToken)).status).toBe(200);
      expect((await refund(admin.accessToken)).status).toBe(200);
      expect((await readAll()).status).toBe(401);

      // and on a real admin route
      expect((await t.http.get('/v1/admin/orders', { token: customer.accessToken })).status).toBe(
        403,
      );
      expect((await t.http.get('/v1/admin/orders', { token: admin.accessToken })).status).toBe(200);
    });

    it('signs staff and admins in with their role in /me', async () => {
      const admin = await createAdmin(t);
      expect((await t.http.get('/v1/me', { token: admin.accessToken })).body.role).toBe('admin');
      const staff = await createStaff(t);
      expect((await t.http.get('/v1/me', { token: staff.accessToken })).body.role).toBe('staff');
    });
  });

  describe('sessions per account (SESSIONS_PER_ACCOUNT=3)', () => {
    let capped: TestApp;
    let twin: TestApp; // a second API process on the same database
    beforeAll(async () => {
      const env = { SESSIONS_PER_ACCOUNT: '3', PASSWORD_HASH_CONCURRENCY: '4' };
      capped = await bootTestApp({ env });
      twin = await bootTestApp({
        db: capped.db,
        env: { ...env, REDIS_KEY_PREFIX: capped.config.redis.keyPrefix },
      });
    });
    afterAll(async () => {
      await twin?.close();
      await capped?.close();
    });

    it('holds the limit when sign-ins of one account really overlap (two processes, hashing in parallel)', async () => {
      const s = await registerCustomer(capped.http);
      const signIns = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          login(i % 2 ? twin.http : capped.http, s.email, TEST_PASSWORD),
        ),
      );
      expect(signIns).toHaveLength(16);
      const rows = await families(s.user.id);
      expect(rows).toHaveLength(17);
      expect(rows.filter((r) => r.revoked_reason === null)).toHaveLength(3);
    });

    const families = async (userId: string) =>
      (
        await capped.db.pool.query(
          `SELECT id, revoked_reason FROM refresh_token_families WHERE user_id = $1 ORDER BY created_at, id`,
          [userId],
        )
      ).rows as { id: string; revoked_reason: string | null }[];

    it('ends the oldest sessions beyond the limit, also under concurrent sign-ins, never the new one', async () => {
      const first = await registerCustomer(capped.http);
      const signIns = await Promise.all(
        Array.from({ length: 5 }, () => login(capped.http, first.email, TEST_PASSWORD)),
      );
      const rows = await families(first.user.id);
      expect(rows).toHaveLength(6);
      expect(rows.filter((r) => r.revoked_reason === null)).toHaveLength(3);
      expect(rows.filter((r) => r.revoked_reason !== null).map((r) => r.revoked_reason)).toEqual([
        'session-limit',
        'session-limit',
        'session-limit',
      ]);
      // the registration's session is the oldest: ended, its access token refused at once
      expect(rows[0].revoked_reason).toBe('session-limit');
      const me = await capped.http.get('/v1/me', { token: first.accessToken });
      expect(me.status).toBe(401);
      const stale = await capped.http.post('/v1/auth/refresh', {
        refreshToken: first.refreshToken,
      });
      expect(stale.status).toBe(401);
      expect(stale.body.code).toBe('REFRESH_TOKEN_INVALID');

      // a sign-in that has just answered always works, and the live ones still refresh
      const newest = await login(capped.http, first.email, TEST_PASSWORD);
      expect((await capped.http.get('/v1/me', { token: newest.accessToken })).status).toBe(200);
      const live = new Set(
        (await families(first.user.id)).filter((r) => !r.revoked_reason).map((r) => r.id),
      );
      expect(live.size).toBe(3);
      for (const s of [...signIns, newest]) {
        const fam = (
          await capped.db.pool.query(`SELECT family_id FROM refresh_tokens WHERE token_hash = $1`, [
            sha256(s.refreshToken),
          ])
        ).rows[0].family_id as string;
        const refreshed = await capped.http.post('/v1/auth/refresh', {
          refreshToken: s.refreshToken,
        });
        expect(refreshed.status).toBe(live.has(fam) ? 200 : 401);
      }
    });

    it('keeps the session in use and ends abandoned ones first (by last use, not by start)', async () => {
      const daily = await registerCustomer(capped.http);
      // a script signs in again and again and abandons each session (past its idle timeout)
      for (let i = 0; i < 4; i++) {
        const abandoned = await login(capped.http, daily.email, TEST_PASSWORD);
        await capped.db.pool.query(
          `UPDATE refresh_tokens SET idle_expires_at = now() - interval '1 second' WHERE token_hash = $1`,
          [sha256(abandoned.refreshToken)],
        );
      }
      const refreshed = await capped.http.post('/v1/auth/refresh', {
        refreshToken: daily.refreshToken,
      });
      expect(refreshed.status).toBe(200);
      const rows = await families(daily.user.id);
      // the registration's session, in use, and the two newest abandoned ones are kept
      expect(rows.map((r) => r.revoked_reason)).toEqual([
        null,
        'session-limit',
        'session-limit',
        null,
        null,
      ]);
    });

    it('counts only live sessions: ended ones (logout) leave room', async () => {
      const s = await registerCustomer(capped.http);
      const a = await login(capped.http, s.email, TEST_PASSWORD);
      expect(
        (await capped.http.post('/v1/auth/logout', { refreshToken: a.refreshToken })).status,
      ).toBe(204);
      await login(capped.http, s.email, TEST_PASSWORD);
      // registration + one more sign-in: 3 live with the logged-out one not counted
      const rows = await families(s.user.id);
      expect(rows.map((r) => r.revoked_reason)).toEqual([null, 'logout', null]);
      expect((await capped.http.get('/v1/me', { token: s.accessToken })).status).toBe(200);
    });
  });

  it('never throttles with RATE_LIMIT_ENABLED=false (the harness default)', async () => {
    expect(t.config.rateLimitEnabled).toBe(false);
    const s = await registerCustomer(t.http);
    const statuses = [];
    for (let i = 0; i < 7; i++) {
      const r = await t.http.post('/v1/auth/login', { email: s.email, password: 'wrong-password' });
      statuses.push(r.status);
      expect(r.headers.get('ratelimit')).toBeNull();
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 401, 401]);
  });

  it('seeds the demo accounts idempotently and prints their credentials', async () => {
    // a database of its own: the seed refuses one holding other accounts (test/e2e/seed.test.ts)
    const fresh = await bootTestApp();
    try {
      const seeder = fresh.app.get(DemoSeeder);
      const lines = [...(await seeder.run()), ...(await seeder.run())].join('\n');
      for (const account of [DEMO_ADMIN, DEMO_CUSTOMER]) {
        expect(lines).toContain(account.email);
        expect(lines).toContain(account.password);
      }
      const rows = await fresh.db.pool.query(
        `SELECT email, role FROM users WHERE email = ANY($1) ORDER BY email`,
        [[DEMO_ADMIN.email, DEMO_CUSTOMER.email]],
      );
      expect(rows.rows).toEqual([
        { email: DEMO_ADMIN.email, role: 'admin' },
        { email: DEMO_CUSTOMER.email, role: 'customer' },
      ]);
      expect((await login(fresh.http, DEMO_ADMIN.email, DEMO_ADMIN.password)).user.role).toBe(
        'admin',
      );
      expect((await login(fresh.http, DEMO_CUSTOMER.email, DEMO_CUSTOMER.password)).user.role).toBe(
        'customer',
      );
    } finally {
      await fresh.close();
    }
  });

  it('has entities that match the tables the migration creates (no drift)', async () => {
    const sql = await t.app.get(DataSource).driver.createSchemaBuilder().log();
    const identity = sql.upQueries.filter((q) => /users|refresh_token/.test(q.query));
    expect(identity.map((q) => q.query)).toEqual([]);
  });
});
