import type Redis from 'ioredis';
import type { Clock } from '../common/time/clock';
import { loadConfig } from '../config/config';
import {
  CLOCK_SKEW_MS,
  REVOCATION_POLL_MS,
  REVOCATION_REDIS_BACKOFF_MS,
  REVOCATION_REDIS_TIMEOUT_MS,
  REVOCATION_RETRY_MS,
  RevokedSessions,
} from './revoked-sessions';
import { mockOf } from '../../test/support/mocks';

const config = loadConfig({
  NODE_ENV: 'development',
  JWT_SECRET: 'unit-test-secret-unit-test-secret-0123',
  JWT_ACCESS_TTL_SECONDS: '900',
  REDIS_KEY_PREFIX: 'unit',
});
const LIFETIME_MS = 900_000 + CLOCK_SKEW_MS;

/** A Redis stand-in: a key → value map, which can be switched to failing or hanging. */
function fakeRedis() {
  const store = new Map<string, { value: string; px: number }>();
  const state = { mode: 'up' as 'up' | 'down' | 'hanging', exists: 0, execs: 0 };
  const answer = <T>(value: () => T): Promise<T> =>
    state.mode === 'up'
      ? Promise.resolve(value())
      : state.mode === 'down'
        ? Promise.reject(new Error("Stream isn't writeable"))
        : new Promise<T>(() => undefined);
  const redis = mockOf<Pick<Redis, 'exists' | 'pipeline'>>(
    {
      exists: jest.fn((key: string) => {
        state.exists++;
        return answer(() => (store.has(key) ? 1 : 0));
      }),
      pipeline: jest.fn(() => {
        const sets: [string, string, number][] = [];
        const pipeline = {
          set: (key: string, value: string, _px: 'PX', ms: number) => {
            sets.push([key, value, ms]);
            return pipeline;
          },
          exec: () => {
            state.execs++;
            return answer(() =>
              sets.map(([key, value, px]) => {
                store.set(key, { value, px });
                return [null, 'OK'];
              }),
            );
          },
        };
        return pipeline;
      }),
    },
    'redis',
  );
  return { redis, store, state };
}

function setup() {
  const r = fakeRedis();
  let now = Date.parse('2026-01-01T10:00:00Z');
  const clock: Clock = { now: () => new Date(now) };
  const revoked: { id: string; revokedAt: Date }[] = [];
  // the database's clock minus this host's (it stamps the revocations and answers the reads)
  let dbOffset = 0;
  const families = {
    revokedSince: jest.fn(async (since: Date | null, withinMs: number) => {
      const at = now + dbOffset;
      const from = Math.max(since?.getTime() ?? -Infinity, at - withinMs);
      return {
        readAt: new Date(at),
        revoked: revoked.filter((f) => f.revokedAt.getTime() >= from),
      };
    }),
  };
  const sessions = new RevokedSessions(r.redis, config, clock, families);
  return {
    ...r,
    sessions,
    revoked,
    families,
    advance: (ms: number) => (now += ms),
    now: () => now,
    dbNow: () => now + dbOffset,
    hostAheadOfDatabase: (ms: number) => (dbOffset = -ms),
  };
}

/** A process's first check, which waits (briefly) for its first read of the record: fake timers run it. */
async function firstCheck(sessions: RevokedSessions, familyId: string): Promise<boolean> {
  const answer = sessions.isRevoked(familyId);
  await jest.advanceTimersByTimeAsync(0);
  return answer;
}

describe('RevokedSessions', () => {
  afterEach(() => jest.useRealTimers());

  it('writes one mark per family under the prefix, living an access-token lifetime', async () => {
    const s = setup();
    await s.sessions.add(['f-1', 'f-2']);
    expect([...s.store]).toEqual([
      ['unit:revoked-session:f-1', { value: '1', px: LIFETIME_MS }],
      ['unit:revoked-session:f-2', { value: '1', px: LIFETIME_MS }],
    ]);
  });

  it('answers for its own revocations from memory, and asks Redis about the others', async () => {
    const s = setup();
    await s.sessions.add(['f-1']);
    expect(await s.sessions.isRevoked('f-1')).toBe(true);
    expect(s.state.exists).toBe(0);
    expect(await s.sessions.isRevoked('f-live')).toBe(false);
    expect(s.state.exists).toBe(1);

    s.store.set('unit:revoked-session:f-elsewhere', { value: '1', px: 1 }); // another process
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(true);
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(true);
    expect(s.state.exists).toBe(2); // the second answer came from memory
  });

  it('forgets a revocation once no access token of the family can be valid', async () => {
    const s = setup();
    await s.sessions.add(['f-1']);
    s.store.clear(); // Redis expired it
    s.advance(LIFETIME_MS + 1);
    expect(await s.sessions.isRevoked('f-1')).toBe(false);
    expect(s.sessions.accessTokensValidSince(new Date(LIFETIME_MS))).toEqual(new Date(0));
  });

  it('fails open with Redis down, then skips it for a while instead of asking every time', async () => {
    const s = setup();
    s.state.mode = 'down';
    expect(await s.sessions.isRevoked('f-1')).toBe(false);
    expect(await s.sessions.isRevoked('f-1')).toBe(false);
    expect(s.state.exists).toBe(1);
    s.advance(REVOCATION_REDIS_BACKOFF_MS);
    s.state.mode = 'up';
    expect(await s.sessions.isRevoked('f-1')).toBe(false);
    expect(s.state.exists).toBe(2);
  });

  it('with Redis down, learns of revocations made by other processes from the record within a poll', async () => {
    jest.useFakeTimers();
    const s = setup();
    s.state.mode = 'down';
    expect(await firstCheck(s.sessions, 'f-elsewhere')).toBe(false); // fails open; polling started
    expect(s.families.revokedSince).toHaveBeenCalledTimes(1);
    // another process logs the session out meanwhile (its mark cannot reach Redis)
    s.revoked.push({ id: 'f-elsewhere', revokedAt: new Date(s.now()) });
    s.advance(REVOCATION_POLL_MS);
    await jest.advanceTimersByTimeAsync(REVOCATION_POLL_MS);
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(true);
    expect(await s.sessions.isRevoked('f-live')).toBe(false);
    // a later poll reads what is new since the previous one, reaching back far enough for a
    // revocation stamped by a host whose clock runs behind (a minute) and committed a moment
    // later — not further: every poll re-reads that window
    const polled = s.families.revokedSince.mock.calls.length;
    s.revoked.push({ id: 'f-late', revokedAt: new Date(s.now() - 90_000) });
    s.advance(REVOCATION_POLL_MS);
    await jest.advanceTimersByTimeAsync(REVOCATION_POLL_MS);
    expect(await s.sessions.isRevoked('f-late')).toBe(true);
    const since = s.families.revokedSince.mock.calls[polled][0]!.getTime();
    expect(s.now() - REVOCATION_POLL_MS - since).toBe(2 * 60_000);
    // Redis answers again: the record is still read, a poll at a time, until shutdown
    s.state.mode = 'up';
    s.advance(REVOCATION_REDIS_BACKOFF_MS);
    expect(await s.sessions.isRevoked('f-live')).toBe(false);
    const calls = s.families.revokedSince.mock.calls.length;
    s.advance(10 * REVOCATION_POLL_MS);
    await jest.advanceTimersByTimeAsync(10 * REVOCATION_POLL_MS);
    expect(s.families.revokedSince.mock.calls.length).toBe(calls + 10);
    s.sessions.onApplicationShutdown();
    await jest.advanceTimersByTimeAsync(10 * REVOCATION_POLL_MS);
    expect(s.families.revokedSince.mock.calls.length).toBe(calls + 10);
  });

  it("reads on the database's clock: a host whose clock runs ahead (10 min) still learns of revocations made since its previous read", async () => {
    jest.useFakeTimers();
    const s = setup();
    s.hostAheadOfDatabase(10 * 60_000);
    expect(await firstCheck(s.sessions, 'f-other')).toBe(false);
    // revoked elsewhere a second after that read, stamped by the database; its mark was refused
    s.advance(1_000);
    s.revoked.push({ id: 'f-elsewhere', revokedAt: new Date(s.dbNow()) });
    s.advance(REVOCATION_POLL_MS);
    await jest.advanceTimersByTimeAsync(REVOCATION_POLL_MS);
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(true);
    s.sessions.onApplicationShutdown();
  });

  it('with Redis up but refusing writes, learns of revocations made elsewhere from the record within a poll', async () => {
    jest.useFakeTimers();
    const s = setup();
    // the first check starts the reads of the record, Redis answering or not
    expect(await firstCheck(s.sessions, 'f-other')).toBe(false);
    expect(s.families.revokedSince).toHaveBeenCalledTimes(1);
    // another process revoked the family; its mark was refused (OOM / READONLY), so Redis
    // answers "not revoked" — an answer, not a failure
    s.revoked.push({ id: 'f-elsewhere', revokedAt: new Date(s.now()) });
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(false);
    s.advance(REVOCATION_POLL_MS);
    await jest.advanceTimersByTimeAsync(REVOCATION_POLL_MS);
    expect(await s.sessions.isRevoked('f-elsewhere')).toBe(true);
    expect(await s.sessions.isRevoked('f-live')).toBe(false);
    s.sessions.onApplicationShutdown();
  });

  it('does not wait on a Redis that stops answering', async () => {
    jest.useFakeTimers();
    const s = setup();
    s.state.mode = 'hanging';
    const answer = s.sessions.isRevoked('f-1');
    await jest.advanceTimersByTimeAsync(REVOCATION_REDIS_TIMEOUT_MS);
    await expect(answer).resolves.toBe(false);
  });

  it('keeps refusing what it revoked while Redis is down, and writes the marks once it is back', async () => {
    jest.useFakeTimers();
    const s = setup();
    s.state.mode = 'down';
    await s.sessions.add(['f-1']);
    expect(await firstCheck(s.sessions, 'f-1')).toBe(true);
    expect(s.store.size).toBe(0);

    await jest.advanceTimersByTimeAsync(REVOCATION_RETRY_MS); // still down: tried, kept
    expect(s.state.execs).toBe(2);
    s.state.mode = 'up';
    s.advance(REVOCATION_RETRY_MS * 2);
    await jest.advanceTimersByTimeAsync(REVOCATION_RETRY_MS);
    expect(s.store.get('unit:revoked-session:f-1')).toEqual({
      value: '1',
      px: LIFETIME_MS - REVOCATION_RETRY_MS * 2, // only the lifetime it has left
    });
    await jest.advanceTimersByTimeAsync(REVOCATION_RETRY_MS * 5);
    expect(s.state.execs).toBe(3); // written once: nothing left to retry
    s.sessions.onApplicationShutdown();
  });

  it('re-writes the marks of families revoked within the lifetime from the record, each with what it has left', async () => {
    const s = setup();
    s.revoked.push(
      { id: 'recent', revokedAt: new Date(s.now() - 60_000) },
      { id: 'old', revokedAt: new Date(s.now() - LIFETIME_MS - 1) },
    );
    expect(await s.sessions.reseed()).toBe(1);
    expect(s.families.revokedSince).toHaveBeenCalledWith(null, LIFETIME_MS); // the lifetime back, on the database's clock
    expect([...s.store]).toEqual([
      ['unit:revoked-session:recent', { value: '1', px: LIFETIME_MS - 60_000 }],
    ]);
    // remembered here as well: refused with Redis down
    s.state.mode = 'down';
    expect(await s.sessions.isRevoked('recent')).toBe(true);
    s.sessions.onApplicationShutdown();
  });

  it("a process's first check waits for its first read of the record: a revocation since the boot's re-seed is known at once", async () => {
    jest.useFakeTimers();
    const s = setup();
    Object.assign(s.redis, { on: jest.fn() });
    s.sessions.onApplicationBootstrap();
    await jest.advanceTimersByTimeAsync(0);
    // revoked elsewhere after the re-seed; its mark refused by Redis (which answers "not revoked")
    s.revoked.push({ id: 'f-since-boot', revokedAt: new Date(s.now()) });
    expect(await firstCheck(s.sessions, 'f-since-boot')).toBe(true);
    s.sessions.onApplicationShutdown();
  });

  it('a first read that hangs (the database black-holed) holds the first checks up once, 250 ms at most, never each check', async () => {
    jest.useFakeTimers();
    const s = setup();
    s.families.revokedSince.mockImplementation(() => new Promise(() => undefined));
    const first = s.sessions.isRevoked('f-1');
    s.advance(REVOCATION_REDIS_TIMEOUT_MS);
    await jest.advanceTimersByTimeAsync(REVOCATION_REDIS_TIMEOUT_MS);
    expect(await first).toBe(false);
    // later checks answer at once: no timer needs to run for them
    expect(await s.sessions.isRevoked('f-2')).toBe(false);
    s.sessions.onApplicationShutdown();
  });

  it('a process that never checks an access token (the worker) never reads the record after its boot', async () => {
    jest.useFakeTimers();
    const s = setup();
    Object.assign(s.redis, { on: jest.fn() });
    s.sessions.onApplicationBootstrap(); // the boot's re-seed reads it once
    await jest.advanceTimersByTimeAsync(10 * REVOCATION_POLL_MS);
    expect(s.families.revokedSince).toHaveBeenCalledTimes(1);
    s.sessions.onApplicationShutdown();
  });

  it('re-seeds when the Redis connection becomes ready (Redis back without its data), one pass at a time', async () => {
    const s = setup();
    const listeners: (() => void)[] = [];
    Object.assign(s.redis, {
      on: (event: string, fn: () => void) => event === 'ready' && listeners.push(fn),
    });
    s.revoked.push({ id: 'f-1', revokedAt: new Date(s.now()) });
    s.sessions.onApplicationBootstrap();
    await s.sessions.reseed(); // the boot's pass, already running: joined, not repeated
    expect(s.families.revokedSince).toHaveBeenCalledTimes(1);
    s.store.clear(); // Redis restarted empty
    listeners.forEach((fn) => fn());
    await s.sessions.reseed();
    expect(s.families.revokedSince).toHaveBeenCalledTimes(2);
    expect(s.store.has('unit:revoked-session:f-1')).toBe(true);
    s.sessions.onApplicationShutdown();
  });

  it('a record that cannot be read leaves the marks as they are, does not throw, and is read again shortly', async () => {
    jest.useFakeTimers();
    const s = setup();
    s.revoked.push({ id: 'f-1', revokedAt: new Date(s.now()) });
    s.families.revokedSince.mockRejectedValueOnce(new Error('database down'));
    await expect(s.sessions.reseed()).resolves.toBe(0);
    expect(s.store.size).toBe(0);
    await jest.advanceTimersByTimeAsync(5_000);
    expect(s.families.revokedSince).toHaveBeenCalledTimes(2);
    expect(s.store.has('unit:revoked-session:f-1')).toBe(true);
    s.sessions.onApplicationShutdown();
  });

  it('writes thousands of marks in pipelines of 500', async () => {
    const s = setup();
    for (let i = 0; i < 1_200; i++) s.revoked.push({ id: `f-${i}`, revokedAt: new Date(s.now()) });
    expect(await s.sessions.reseed()).toBe(1_200);
    expect(s.redis.pipeline).toHaveBeenCalledTimes(3);
    expect(s.store.size).toBe(1_200);
    s.sessions.onApplicationShutdown();
  });
});
