import { EventEmitter } from 'node:events';
import { loadConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { FailedAttemptLimiter } from './failed-attempt-limiter';
import type { FailureBucket } from './rate-limit.policies';

const bucket: FailureBucket = {
  key: 'signin-account:abc',
  kind: 'window',
  limit: 3,
  windowMs: 60_000,
  baseMs: 0,
  capMs: 0,
};

function setup(reserveAnswer: () => Promise<unknown>, env: Record<string, string> = {}) {
  const calls: unknown[][] = [];
  const redis = {
    eval: jest.fn((...args: unknown[]) => {
      calls.push(args);
      return calls.length === 1 ? reserveAnswer() : Promise.resolve([0, 0]);
    }),
  };
  const config = loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit', ...env });
  return { limiter: new FailedAttemptLimiter(redis, config), redis, calls };
}

/** RATE_LIMIT_STORE_TIMEOUT_MS's default. */
const STORE_TIMEOUT_MS = loadConfig({ NODE_ENV: 'development' }).rateLimitStoreTimeoutMs;

/** The own-client mark's check (failed-attempt-limiter.ts IS_KNOWN). */
const IS_KNOWN_SCRIPT = "redis.call('GET', KEYS[1]) == ARGV[1]";

const settle = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ value: v }),
    (e: unknown) => (e instanceof DomainError ? { code: e.code, options: e.options } : { e }),
  );

describe('FailedAttemptLimiter', () => {
  it('reserves before verifying and gives a success back', async () => {
    const s = setup(() => Promise.resolve([0, 0]));
    const verify = jest.fn().mockResolvedValue('principal');
    expect(await s.limiter.attempt([bucket], verify)).toBe('principal');
    expect(s.calls).toHaveLength(2);
    // each bucket's key, then its in-flight count's
    expect(s.calls[0].slice(1, 4)).toEqual([
      2,
      'unit:rl:signin-account:abc',
      'unit:rl:signin-account:abc:p',
    ]);
    expect(s.calls[1].slice(1, 5)).toEqual([
      2,
      'unit:rl:signin-account:abc',
      'unit:rl:signin-account:abc:p',
      'success',
    ]);
    expect(s.redis.eval.mock.invocationCallOrder[0]).toBeLessThan(
      verify.mock.invocationCallOrder[0],
    );
  });

  it('keeps a failure counted: nothing is given back, the attempt is only no longer in flight', async () => {
    const s = setup(() => Promise.resolve([0, 0]));
    expect(await s.limiter.attempt([bucket], () => Promise.resolve(null))).toBeNull();
    expect(s.calls).toHaveLength(2);
    expect(s.calls[1][4]).toBe('failure');
  });

  it('restarts the lock of a progressive bucket when its failure is known', async () => {
    const s = setup(() => Promise.resolve([0, 0]));
    const progressive: FailureBucket = { ...bucket, kind: 'progressive', baseMs: 1_000 };
    expect(await s.limiter.attempt([progressive, bucket], () => Promise.resolve(null))).toBeNull();
    expect(s.calls).toHaveLength(2);
    expect(s.calls[1][6]).toBe('failure'); // script, 4, key, key, key:p, key:p, outcome, …
  });

  it('gives back an attempt whose verification threw (nothing was verified), and rethrows', async () => {
    const s = setup(() => Promise.resolve([0, 0]));
    const busy = new DomainError('SERVICE_UNAVAILABLE');
    expect(await settle(s.limiter.attempt([bucket], () => Promise.reject(busy)))).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
    });
    expect(s.calls[1][4]).toBe('unused');
  });

  it('refuses an exhausted bucket with 429 and Retry-After in whole seconds, without verifying', async () => {
    const s = setup(() => Promise.resolve([2_500, 1]));
    const verify = jest.fn();
    // the bucket that refused is in the RateLimit headers (API.md: a 429 says its limit)
    expect(await settle(s.limiter.attempt([bucket], verify))).toEqual({
      code: 'RATE_LIMITED',
      options: {
        headers: {
          'Retry-After': '3',
          'RateLimit-Policy': '"signin-account";q=3;w=60',
          RateLimit: '"signin-account";r=0;t=3',
        },
      },
    });
    expect(verify).not.toHaveBeenCalled();
  });

  it('fails closed when Redis is unavailable: 503 with Retry-After (a dependency down, not a limit reached), nothing verified', async () => {
    const s = setup(() => Promise.reject(new Error("Stream isn't writeable")));
    const verify = jest.fn();
    expect(await settle(s.limiter.attempt([bucket], verify))).toEqual({
      code: 'SERVICE_UNAVAILABLE',
      options: { headers: { 'Retry-After': '5' } },
    });
    expect(verify).not.toHaveBeenCalled();
  });

  it('gives back a reservation Redis ran after the limiter gave up on it (refused 503 unverified: not a failure)', async () => {
    let answer!: (v: unknown) => void;
    const s = setup(() => new Promise((resolve) => (answer = resolve)));
    const verify = jest.fn();
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      const attempt = settle(s.limiter.attempt([bucket], verify));
      await jest.advanceTimersByTimeAsync(600);
      expect(await attempt).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      jest.useRealTimers();
    }
    expect(verify).not.toHaveBeenCalled();
    expect(s.calls).toHaveLength(1);
    answer([0, 0]); // Redis was slow, not down: it counted the attempt
    await new Promise((resolve) => setImmediate(resolve));
    expect(s.calls).toHaveLength(2);
    expect(s.calls[1].slice(1, 5)).toEqual([
      2,
      'unit:rl:signin-account:abc',
      'unit:rl:signin-account:abc:p',
      'unused',
    ]);
  });

  it("a silent Redis costs a sign-in one STORE_TIMEOUT_MS, not one per question (the owner's marks, then the reservation)", async () => {
    const redis = { eval: jest.fn(() => new Promise(() => undefined)) };
    const limiter = new FailedAttemptLimiter(
      redis,
      loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit' }),
    );
    const verify = jest.fn();
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      const started = performance.now();
      let answeredAt = 0;
      const signIn = settle(
        limiter.signIn('login', 'a@b.io', '10.0.0.1', verify, {
          passwordEpoch: 'epoch-of-the-password1',
          device: 'device-1',
        }),
      ).then((outcome) => {
        answeredAt = performance.now();
        return outcome;
      });
      await jest.advanceTimersByTimeAsync(6 * STORE_TIMEOUT_MS);
      expect(await signIn).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      // (were five, one after another: the device's marks, the address's — each the hash's, then
      // the previous build's key — and the reservation, 2.5 s)
      expect(answeredAt - started).toBe(STORE_TIMEOUT_MS);
    } finally {
      jest.useRealTimers();
    }
    expect(redis.eval).toHaveBeenCalledTimes(1);
    expect(verify).not.toHaveBeenCalled();
  });

  it('gives nothing back for a late reservation that Redis refused (nothing was counted)', async () => {
    let answer!: (v: unknown) => void;
    const s = setup(() => new Promise((resolve) => (answer = resolve)));
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] });
    try {
      const attempt = settle(s.limiter.attempt([bucket], jest.fn()));
      await jest.advanceTimersByTimeAsync(600);
      expect(await attempt).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      jest.useRealTimers();
    }
    answer([2_500, 1]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(s.calls).toHaveLength(1);
  });

  it('lets a success through when the give-back fails (the attempt just stays counted)', async () => {
    const s = setup(() => Promise.resolve([0, 0]));
    s.redis.eval.mockResolvedValueOnce([0, 0]).mockRejectedValueOnce(new Error('gone'));
    expect(await s.limiter.attempt([bucket], () => Promise.resolve('ok'))).toBe('ok');
  });

  it("asks an unknown account the same questions as a known one (Redis's mark, the sessions on record: no timing tells them apart) and remembers no client for it", async () => {
    const calls: unknown[][] = [];
    const redis = {
      eval: jest.fn((...args: unknown[]) => {
        calls.push(args);
        return Promise.resolve(String(args[0]).includes(IS_KNOWN_SCRIPT) ? 0 : [0, 0]);
      }),
    };
    const limiter = new FailedAttemptLimiter(
      redis,
      loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit' }),
    );
    const asked = (script: string) => calls.filter((c) => String(c[0]).includes(script)).length;
    for (const passwordEpoch of [null, 'epoch-of-the-password1']) {
      calls.length = 0;
      const onRecord = jest.fn().mockResolvedValue(false);
      await limiter.signIn('login', 'a@b.io', '10.0.0.1', () => Promise.resolve(null), {
        passwordEpoch,
        ownClientOnRecord: onRecord,
      });
      expect([
        passwordEpoch,
        asked("redis.call('HGET', KEYS[1], ARGV[1])"),
        asked(IS_KNOWN_SCRIPT),
        onRecord.mock.calls.length,
      ]).toEqual([passwordEpoch, 1, 1, 1]);
    }
    // a right password for an account with no epoch cannot happen; none is ever remembered without one
    calls.length = 0;
    await limiter.signIn('login', 'a@b.io', '10.0.0.1', () => Promise.resolve('ok'), {
      passwordEpoch: null,
    });
    expect(asked("'HSET', KEYS[1]")).toBe(0);
  });

  it("waits out a reconnect before asking whether the client is the owner's: asked into the gap, the owner was judged a stranger", async () => {
    const events = new EventEmitter();
    const redis = Object.assign(events, {
      status: 'reconnecting',
      eval: jest.fn((...args: unknown[]) => {
        // no offline queue: a command sent between connections is refused at once
        if (redis.status !== 'ready') return Promise.reject(new Error("Stream isn't writeable"));
        return Promise.resolve(String(args[0]).includes(IS_KNOWN_SCRIPT) ? 1 : [0, 0]);
      }),
    });
    const limiter = new FailedAttemptLimiter(
      redis,
      loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit' }),
    );
    setTimeout(() => {
      redis.status = 'ready';
      redis.emit('ready');
    }, 50);
    const verify = jest.fn().mockResolvedValue('principal');
    expect(
      await limiter.signIn('login', 'a@b.io', '10.0.0.1', verify, {
        passwordEpoch: 'epoch-of-the-password1',
      }),
    ).toBe('principal');
    expect(verify).toHaveBeenCalledWith({ own: true }); // the owner's own client, as it is
  });

  it('is off with RATE_LIMIT_ENABLED=false: verifies without Redis', async () => {
    const s = setup(() => Promise.reject(new Error('must not be called')), {
      RATE_LIMIT_ENABLED: 'false',
    });
    expect(await s.limiter.attempt([bucket], () => Promise.resolve(null))).toBeNull();
    expect(s.redis.eval).not.toHaveBeenCalled();
  });
});
