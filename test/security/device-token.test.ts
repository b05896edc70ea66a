import { Algorithm, hash } from '@node-rs/argon2';
import type Redis from 'ioredis';
import { createHash } from 'node:crypto';
import { AccountService } from '../../src/auth/account.service';
import { PasswordHasher } from '../../src/auth/password-hasher';
import {
  FailedAttemptLimiter,
  KNOWN_DEVICES_PER_ACCOUNT,
} from '../../src/common/throttling/failed-attempt-limiter';
import {
  accountClientDigest,
  knownDeviceField,
  knownDevicesKey,
  legacyKnownDeviceKey,
} from '../../src/common/throttling/rate-limit.policies';
import { REHASH_SETTING } from '../../src/users/password-epoch';
import { REDIS } from '../../src/redis/redis.module';
import { TEST_PASSWORD, registerCustomer, signInLimitsAnswering } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

// API.md (login): "a stranger can never lock the owner out: the right password from the owner's
// own client still signs in". A client was only its address, and a stranger behind the same
// address (an office's NAT, a mobile carrier's shared address) filled the owner's (account,
// address) pair: five wrong passwords, and the owner's right one waited — up to 15 minutes a
// try as the stranger went on. Login and register now answer a device token; a login sending it
// counts as that device. (What each test asserts about the buckets is read from Redis, not
// inferred from a delay's timing.)

const FREE_FAILURES = 5; // SIGN_IN_FAILURES_PER_CLIENT's default
const CEILING = 12; // SIGN_IN_FAILURES_PER_ACCOUNT, set low for this file
const DEVICE_TOKEN = /^([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43}$/;

const fromClient = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
const deviceOf = (token: string | undefined) => DEVICE_TOKEN.exec(token ?? '')?.[1];
const statusesOf = (answers: { status: number }[]) => answers.map((r) => r.status).sort();

describe("login: a device token makes the owner's device a client of its own", () => {
  let t: TestApp;
  let redis: Redis;
  const signIn = (email: string, password: string, ip: string, deviceToken?: string) =>
    t.http.post(
      '/v1/auth/login',
      { email, password, ...(deviceToken === undefined ? {} : { deviceToken }) },
      fromClient(ip),
    );
  /** `count` wrong passwords, one after another: counted before verifying, so exactly the free ones are verified. */
  // one at a time: one address holds HASH_PLACES_PER_NETWORK places in the argon2 gate at once,
  // the rest of a burst refused 503 there (a burst's atomic reservation is login-lockout.test.ts's)
  const guesses = async (email: string, ip: string, count: number, deviceToken?: string) => {
    const answers = [];
    for (let i = 0; i < count; i++)
      answers.push(await signIn(email, `guess-${i}-guess`, ip, deviceToken));
    return answers;
  };
  const bucketKey = (bucket: string) => `${t.config.redis.keyPrefix}:rl:${bucket}`;
  /** The failures a progressive bucket holds (0: none, or forgotten). */
  const failuresIn = async (bucket: string) =>
    Number((await redis.hget(bucketKey(bucket), 'f')) ?? 0);
  const addressBucket = (email: string, ip: string) =>
    `signin-client:${accountClientDigest(email, ip)}`;
  const deviceBucket = (email: string, device: string) =>
    `signin-device:${createHash('sha256').update(`${email}\0${device}`).digest('base64url')}`;

  beforeAll(async () => {
    t = await bootTestApp({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        TRUST_PROXY: '127.0.0.1',
        SIGN_IN_FAILURES_PER_ACCOUNT: String(CEILING),
      },
    });
    redis = t.app.get<Redis>(REDIS);
    await signInLimitsAnswering(t.http, fromClient('10.60.0.1').headers);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("a stranger behind the owner's address fills that address's failures, not the owner's device; a token not made for the account names no device", async () => {
    const shared = '10.61.0.1';
    const owner = await registerCustomer(t.http, fromClient(shared));
    const other = await registerCustomer(t.http, fromClient('10.61.5.5'));
    expect(owner.deviceToken).toMatch(DEVICE_TOKEN);
    // the stranger's guesses from the shared address: the free ones verified, the rest held back
    expect(statusesOf(await guesses(owner.email, shared, FREE_FAILURES + 2))).toEqual([
      ...Array(FREE_FAILURES).fill(401),
      429,
      429,
    ]);
    expect(await failuresIn(addressBucket(owner.email, shared))).toBe(FREE_FAILURES);
    // the owner's device, sending its token from that address, signs in — and gets it back as it was
    const own = await signIn(owner.email, TEST_PASSWORD, shared, owner.deviceToken);
    expect(own.status).toBe(200);
    expect(own.body.deviceToken).toBe(owner.deviceToken);
    // the address's failures stay: the stranger there is still held
    expect(await failuresIn(addressBucket(owner.email, shared))).toBe(FREE_FAILURES);

    // another account's token, an altered one, a made-up one: counted at the address, as none
    const elsewhere = '10.61.9.9';
    const altered = `${owner.deviceToken!.slice(0, -1)}${owner.deviceToken!.endsWith('A') ? 'B' : 'A'}`;
    for (const token of [other.deviceToken!, altered, 'not-a-device-token']) {
      expect((await signIn(owner.email, 'a-wrong-guess', elsewhere, token)).status).toBe(401);
    }
    expect(await failuresIn(addressBucket(owner.email, elsewhere))).toBe(3);
    expect(await failuresIn(deviceBucket(owner.email, deviceOf(other.deviceToken)!))).toBe(0);
    expect(await failuresIn(deviceBucket(owner.email, deviceOf(owner.deviceToken)!))).toBe(0);
  });

  it("the token is no credential: wrong passwords with it are the device's own failures, five verified at most", async () => {
    const owner = await registerCustomer(t.http, fromClient('10.62.0.1'));
    const thief = '10.62.9.9';
    const burst = await guesses(owner.email, thief, FREE_FAILURES + 2, owner.deviceToken);
    expect(statusesOf(burst)).toEqual([...Array(FREE_FAILURES).fill(401), 429, 429]);
    for (const held of burst.filter((r) => r.status === 429)) {
      expect(held.headers.get('ratelimit-policy')).toMatch(/"signin-device";q=\d+;w=\d+$/);
    }
    expect(await failuresIn(deviceBucket(owner.email, deviceOf(owner.deviceToken)!))).toBe(
      FREE_FAILURES,
    );
    // counted as the device, not as the address: the address's own pair has none of them
    expect(await failuresIn(addressBucket(owner.email, thief))).toBe(0);
    expect((await signIn(owner.email, 'a-guess-without-it', thief)).status).toBe(401);
  });

  it("after a password change the owner's device stays the owner's: a stranger filling the account's ceiling does not lock it out, anywhere (API.md); its failures stay its own", async () => {
    const home = '10.63.0.1';
    const owner = await registerCustomer(t.http, fromClient(home));
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'a-brand-new-password' },
      { token: owner.accessToken, ...fromClient(home) },
    );
    expect(changed.status).toBe(204);
    // strangers fill the account's ceiling from many addresses
    const spray = await Promise.all(
      Array.from({ length: CEILING + 2 }, (_, i) =>
        signIn(owner.email, `guess-${i}-guess`, `10.63.${i + 1}.1`),
      ),
    );
    expect(spray.filter((r) => r.status === 429)).toHaveLength(2);
    // the device signed in under the old password only, and away from any address of the owner's:
    // the owner's still (a phone on a carrier's changing addresses), not held by the ceiling —
    // spared the account's ceiling only: the address's and the network's still count it, and its
    // check waits in the ordinary lane (a device a thief signed in from keeps no more than that)
    const attempt = jest.spyOn(FailedAttemptLimiter.prototype, 'attempt');
    const verify = jest.spyOn(PasswordHasher.prototype, 'verifySignIn');
    const counted = () => attempt.mock.calls[0][0].map((b) => b.key.split(':')[0]);
    try {
      const away = await signIn(
        owner.email,
        'a-brand-new-password',
        '10.63.200.1',
        owner.deviceToken,
      );
      expect(away.status).toBe(200);
      expect(away.body.deviceToken).toBe(owner.deviceToken);
      expect(counted()).toEqual(['signin-device', 'signin-ip']);
      expect(verify.mock.calls[0][2]).toMatchObject({ priority: false });
      attempt.mockClear();
      verify.mockClear();
      // signed in with the new password, it is the owner's own again: its pair, ahead — and the
      // address's ceiling, which counts it as anyone but never refuses it
      expect(
        (await signIn(owner.email, 'a-brand-new-password', '10.63.201.1', owner.deviceToken))
          .status,
      ).toBe(200);
      expect(counted()).toEqual(['signin-device', 'signin-ip']);
      expect(attempt.mock.calls[0][0][1].limit).toBe(Number.MAX_SAFE_INTEGER);
      expect(verify.mock.calls[0][2]).toMatchObject({ priority: true });
    } finally {
      attempt.mockRestore();
      verify.mockRestore();
    }
    // every other client is held; an address the device signed in from before is no longer the owner's
    expect((await signIn(owner.email, 'a-brand-new-password', '10.63.202.1')).status).toBe(429);
    // a device spared the ceiling is spared nothing else: its wrong guesses fill its own pair
    const device = deviceOf(owner.deviceToken)!;
    const wrong = await guesses(owner.email, '10.63.203.1', 7, owner.deviceToken);
    expect(wrong.filter((r) => r.status === 401)).toHaveLength(5);
    expect(wrong.filter((r) => r.status === 429)).toHaveLength(2);
    expect(await failuresIn(deviceBucket(owner.email, device))).toBe(5);
  });

  it.each(['registered', 'made by admin:create'] as const)(
    "a new account %s with a deleted account's email does not inherit its devices",
    async (how) => {
      const first = await registerCustomer(t.http, fromClient('10.64.0.1'));
      await t.db.pool.query(`DELETE FROM users WHERE email = $1`, [first.email]);
      if (how === 'registered') {
        const again = await t.http.post(
          '/v1/auth/register',
          { email: first.email, password: 'someone-elses-password', name: 'New' },
          fromClient('10.64.0.2'),
        );
        expect(again.status).toBe(201);
      } else {
        await t.app
          .get(AccountService)
          .ensureAccount(first.email, 'someone-elses-password', 'admin', 'New');
      }
      await waitFor(
        'the old marks forgotten',
        () =>
          redis.hexists(
            `${t.config.redis.keyPrefix}:rl:${knownDevicesKey(first.email)}`,
            knownDeviceField(deviceOf(first.deviceToken)!),
          ),
        { until: (n) => n === 0 },
      );
      const attempt = jest.spyOn(FailedAttemptLimiter.prototype, 'attempt');
      try {
        // the old device's token still names a device of the email (its MAC is the email's), but
        // no mark of the new account: counted as any client, the account's ceiling included
        expect(
          (await signIn(first.email, 'a-wrong-guess-here', '10.64.0.3', first.deviceToken)).status,
        ).toBe(401);
        expect(attempt.mock.calls[0][0].map((b) => b.key.split(':')[0])).toEqual([
          'signin-device',
          'signin-account',
          'signin-ip',
        ]);
      } finally {
        attempt.mockRestore();
      }
    },
  );

  it("a sign-in that rehashes the password (argon2 parameters raised) leaves the owner's other devices the owner's; the epoch stays", async () => {
    const home = '10.65.0.1';
    const owner = await registerCustomer(t.http, fromClient(home));
    // the account's hash made with weaker parameters than today's (an older deployment's): the
    // same password, so written as a rehash (a bare UPDATE of the hash starts a new epoch)
    const weak = await hash(TEST_PASSWORD, {
      algorithm: Algorithm.Argon2id,
      memoryCost: 4096,
      timeCost: 1,
      parallelism: 1,
    });
    await t.db.pool.query(
      `WITH rehash AS (SELECT set_config('${REHASH_SETTING}', 'on', true))
       UPDATE users SET password_hash = $2 FROM rehash WHERE id = $1`,
      [owner.user.id, weak],
    );
    const epoch = async () =>
      (
        await t.db.pool.query(`SELECT password_hash, password_epoch FROM users WHERE id = $1`, [
          owner.user.id,
        ])
      ).rows[0];
    const before = await epoch();
    // a sign-in from a second device (the owner's laptop, at work) upgrades the hash
    const laptop = await signIn(owner.email, TEST_PASSWORD, '10.65.1.1');
    expect(laptop.status).toBe(200);
    const after = await epoch();
    expect(after.password_hash).not.toBe(weak);
    expect(after.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(after.password_epoch).toBe(before.password_epoch);
    // strangers fill the account's ceiling from many addresses
    const spray = await Promise.all(
      Array.from({ length: CEILING + 2 }, (_, i) =>
        signIn(owner.email, `guess-${i}-guess`, `10.65.${i + 2}.1`),
      ),
    );
    expect(spray.filter((r) => r.status === 429)).toHaveLength(2);
    // the phone registered before the rehash, away from home: still the owner's (its mark was made
    // under the same password) — it was a stranger to the ceiling when marks held the hash's digest
    const phone = await signIn(owner.email, TEST_PASSWORD, '10.65.200.1', owner.deviceToken);
    expect(phone.status).toBe(200);
    expect((await signIn(owner.email, TEST_PASSWORD, '10.65.201.1')).status).toBe(429); // others still held
  });

  it(`an account keeps its last ${KNOWN_DEVICES_PER_ACCOUNT} devices in one Redis key, not a key per sign-in for 90 days: the latest stay the owner's, the oldest is forgotten`, async () => {
    const owner = await registerCustomer(t.http, fromClient('10.64.0.1'));
    const tokens: string[] = [];
    // sign-ins without a token (each a new device), from addresses of their own (login-ip)
    for (let i = 0; i < KNOWN_DEVICES_PER_ACCOUNT + 10; i++) {
      const res = await signIn(owner.email, TEST_PASSWORD, `10.64.${1 + (i % 50)}.${2 + i}`);
      expect(res.status).toBe(200);
      tokens.push(res.body.deviceToken as string);
    }
    const prefix = `${t.config.redis.keyPrefix}:rl:`;
    const devices = prefix + knownDevicesKey(owner.email);
    expect(await redis.hlen(devices)).toBe(KNOWN_DEVICES_PER_ACCOUNT);
    expect(await redis.pttl(devices)).toBeGreaterThan(89 * 86_400_000);
    expect(await redis.keys(`${prefix}signin-known-device:*`)).toEqual([]);
    // strangers fill the account's ceiling from many addresses
    const spray = await Promise.all(
      Array.from({ length: CEILING + 2 }, (_, i) =>
        signIn(owner.email, `guess-${i}-guess`, `10.65.${i + 1}.1`),
      ),
    );
    expect(spray.filter((r) => r.status === 429)).toHaveLength(2);
    // the latest device is the owner's, from anywhere; the one it registered with, long ago, no more
    const latest = await signIn(owner.email, TEST_PASSWORD, '10.65.200.1', tokens.at(-1));
    expect(latest.status).toBe(200);
    const first = await signIn(owner.email, TEST_PASSWORD, '10.65.201.1', owner.deviceToken);
    expect(first.status).toBe(429);
    expect(first.headers.get('ratelimit-policy')).toMatch(/"signin-account";/);
  });

  it("a device marked by the build before the per-account hash (a key of its own) is still the owner's after the upgrade, and moves into the hash", async () => {
    const owner = await registerCustomer(t.http, fromClient('10.66.0.1'));
    const device = deviceOf(owner.deviceToken)!;
    const prefix = `${t.config.redis.keyPrefix}:rl:`;
    const devices = prefix + knownDevicesKey(owner.email);
    const { rows } = await t.db.pool.query<{ epoch: string }>(
      `SELECT password_epoch AS epoch FROM users WHERE email = $1`,
      [owner.email],
    );
    // as the previous build left it: no field in the hash, its own key under the password epoch
    await redis.del(devices);
    await redis.set(
      prefix + legacyKnownDeviceKey(owner.email, device),
      rows[0].epoch,
      'PX',
      3_600_000,
    );
    const spray = await Promise.all(
      Array.from({ length: CEILING + 2 }, (_, i) =>
        signIn(owner.email, `guess-${i}-guess`, `10.67.${i + 1}.1`),
      ),
    );
    expect(spray.filter((r) => r.status === 429)).toHaveLength(2);
    expect(
      (await signIn(owner.email, TEST_PASSWORD, '10.67.200.1', owner.deviceToken)).status,
    ).toBe(200);
    expect(await redis.hlen(devices)).toBe(1);
    expect((await signIn(owner.email, TEST_PASSWORD, '10.67.201.1')).status).toBe(429);
  });

  it('a device token of the wrong type or length is a 400 (null is none); a refresh answers none', async () => {
    const owner = await registerCustomer(t.http, fromClient('10.64.0.1'));
    for (const deviceToken of [42, ['x'], { token: 'x' }, 'x'.repeat(201)]) {
      const res = await t.http.post(
        '/v1/auth/login',
        { email: owner.email, password: TEST_PASSWORD, deviceToken },
        fromClient('10.64.0.1'),
      );
      expect([res.status, res.body.code]).toEqual([400, 'VALIDATION_FAILED']);
      expect(new Set(res.body.errors.map((e: { field: string }) => e.field))).toEqual(
        new Set(['deviceToken']),
      );
    }
    const withNull = await t.http.post(
      '/v1/auth/login',
      { email: owner.email, password: TEST_PASSWORD, deviceToken: null },
      fromClient('10.64.0.1'),
    );
    expect(withNull.status).toBe(200);
    expect(withNull.body.deviceToken).toMatch(DEVICE_TOKEN);
    expect(withNull.body.deviceToken).not.toBe(owner.deviceToken); // no token sent: a new device
    const refreshed = await t.http.post('/v1/auth/refresh', { refreshToken: owner.refreshToken });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body).not.toHaveProperty('deviceToken');
  });
});
