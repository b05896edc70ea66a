import type Redis from 'ioredis';
import { createHash } from 'node:crypto';
import { accountClientDigest } from '../../src/common/throttling/rate-limit.policies';
import { REDIS } from '../../src/redis/redis.module';
import { TEST_PASSWORD, registerCustomer } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

// API.md (login): "a stranger can never lock the owner out: the right password from the owner's
// own client still signs in". A client was only its address, and a stranger behind the same
// address (an office's NAT, a mobile carrier's shared address) filled the owner's (account,
// address) pair: seven wrong passwords, and the owner's right one got 429 for up to 15 minutes.
// Login and register now answer a device token; a login sending it counts as that device.

const FREE_FAILURES = 5; // SIGN_IN_FAILURES_PER_CLIENT's default
const DEVICE_TOKEN = /^([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43}$/;

const fromClient = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
const retryAfter = (res: { headers: Headers }) => Number(res.headers.get('retry-after'));
const waitSeconds = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000 + 50));
const deviceOf = (token: string | undefined) => DEVICE_TOKEN.exec(token ?? '')?.[1];

describe('login: a device token makes the owner\'s device a client of its own', () => {
  let t: TestApp;
  let redis: Redis;
  const signIn = (email: string, password: string, ip: string, deviceToken?: string) =>
    t.http.post('/v1/auth/login', { email, password, ...(deviceToken === undefined ? {} : { deviceToken }) }, fromClient(ip));
  /** `count` wrong passwords at once: counted before verifying, so exactly the free ones are verified. */
  const guesses = async (email: string, ip: string, count: number, deviceToken?: string) =>
    (await Promise.all(Array.from({ length: count }, (_, i) => signIn(email, `guess-${i}-guess`, ip, deviceToken)))).map(
      (r) => r.status,
    );
  const bucketExists = async (bucket: string) => (await redis.exists(`${t.config.redis.keyPrefix}:rl:${bucket}`)) === 1;
  const deviceBucket = (email: string, device: string) =>
    `signin-device:${createHash('sha256').update(`${email}\0${device}`).digest('base64url')}`;

  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' } });
    redis = t.app.get<Redis>(REDIS);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("a stranger behind the owner's address holds that address back, not the owner's device; a token not valid for the account is ignored", async () => {
    const shared = '10.61.0.1';
    const owner = await registerCustomer(t.http, fromClient(shared));
    const other = await registerCustomer(t.http, fromClient('10.61.5.5'));
    expect(owner.deviceToken).toMatch(DEVICE_TOKEN);
    // the stranger's guesses from the shared address: the free ones verified, then held back …
    const burst = await guesses(owner.email, shared, FREE_FAILURES + 2);
    expect(burst.filter((s) => s === 401)).toHaveLength(FREE_FAILURES);
    expect(burst.filter((s) => s === 429)).toHaveLength(2);
    // … and twice more once each delay is over, so the address is held for 4 s from here
    for (let i = 0; i < 2; i++) {
      const held = await signIn(owner.email, 'one-more-guess', shared);
      expect(held.status).toBe(429);
      await waitSeconds(retryAfter(held));
      expect((await signIn(owner.email, `late-guess-${i}`, shared)).status).toBe(401);
    }
    // the owner's right password from that address alone is held back too (the address's pair) …
    expect((await signIn(owner.email, TEST_PASSWORD, shared)).status).toBe(429);
    // … and so with a token that is not this account's, or not one the server made
    const tampered = `${owner.deviceToken!.slice(0, -1)}${owner.deviceToken!.endsWith('A') ? 'B' : 'A'}`;
    for (const token of [other.deviceToken!, tampered, 'not-a-device-token']) {
      expect((await signIn(owner.email, TEST_PASSWORD, shared, token)).status).toBe(429);
    }
    // the owner's device, sending its token, signs in — the same device id, under a new mac
    const own = await signIn(owner.email, TEST_PASSWORD, shared, owner.deviceToken);
    expect(own.status).toBe(200);
    expect(deviceOf(own.body.deviceToken)).toBe(deviceOf(owner.deviceToken));
    // and the stranger at the address is still held
    expect((await signIn(owner.email, 'yet-another-guess', shared)).status).toBe(429);
  }, 30_000);

  it("the token is no credential: wrong passwords with it are the device's own failures, verified five at most", async () => {
    const owner = await registerCustomer(t.http, fromClient('10.62.0.1'));
    const thief = '10.62.9.9';
    const burst = await guesses(owner.email, thief, FREE_FAILURES + 2, owner.deviceToken);
    expect(burst.filter((s) => s === 401)).toHaveLength(FREE_FAILURES);
    expect(burst.filter((s) => s === 429)).toHaveLength(2);
    const held = await signIn(owner.email, 'one-more-guess', thief, owner.deviceToken);
    expect(held.status).toBe(429);
    expect(held.headers.get('ratelimit-policy')).toMatch(/"signin-device";q=\d+;w=\d+$/);
    // counted as the device, not as the address: the address's own pair has none of them
    expect(await bucketExists(deviceBucket(owner.email, deviceOf(owner.deviceToken)!))).toBe(true);
    expect(await bucketExists(`signin-client:${accountClientDigest(owner.email, thief)}`)).toBe(false);
    expect((await signIn(owner.email, 'a-guess-without-it', thief)).status).toBe(401);
  });

  it('a password change makes every earlier token count for nothing; the next sign-in answers a valid one', async () => {
    const owner = await registerCustomer(t.http, fromClient('10.63.0.1'));
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'a-brand-new-password' },
      { token: owner.accessToken, ...fromClient('10.63.0.1') },
    );
    expect(changed.status).toBe(204);
    const elsewhere = '10.63.9.9';
    expect((await signIn(owner.email, 'a-guess', elsewhere, owner.deviceToken)).status).toBe(401);
    // counted at the address: the old token named no device
    expect(await bucketExists(deviceBucket(owner.email, deviceOf(owner.deviceToken)!))).toBe(false);
    expect(await bucketExists(`signin-client:${accountClientDigest(owner.email, elsewhere)}`)).toBe(true);

    const fresh = await signIn(owner.email, 'a-brand-new-password', '10.63.0.1', owner.deviceToken);
    expect(fresh.status).toBe(200);
    expect(deviceOf(fresh.body.deviceToken)).toEqual(expect.any(String));
    expect(deviceOf(fresh.body.deviceToken)).not.toBe(deviceOf(owner.deviceToken)); // a new device id
    expect((await signIn(owner.email, 'another-guess', elsewhere, fresh.body.deviceToken)).status).toBe(401);
    expect(await bucketExists(deviceBucket(owner.email, deviceOf(fresh.body.deviceToken)!))).toBe(true);
  });

  it('a device token of the wrong type or length is a 400 (null is none); a refresh answers none', async () => {
    const owner = await registerCustomer(t.http, fromClient('10.64.0.1'));
    for (const deviceToken of [42, ['x'], { token: 'x' }, 'x'.repeat(201)]) {
      const res = await t.http.post('/v1/auth/login', { email: owner.email, password: TEST_PASSWORD, deviceToken }, fromClient('10.64.0.1'));
      expect([res.status, res.body.code]).toEqual([400, 'VALIDATION_FAILED']);
      expect(new Set(res.body.errors.map((e: { field: string }) => e.field))).toEqual(new Set(['deviceToken']));
    }
    const withNull = await t.http.post('/v1/auth/login', { email: owner.email, password: TEST_PASSWORD, deviceToken: null }, fromClient('10.64.0.1'));
    expect(withNull.status).toBe(200);
    expect(withNull.body.deviceToken).toMatch(DEVICE_TOKEN);
    const refreshed = await t.http.post('/v1/auth/refresh', { refreshToken: owner.refreshToken });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body).not.toHaveProperty('deviceToken');
  });
});
