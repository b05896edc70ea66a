import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config';
import type { TransactionHost } from '../database/transaction-host';
import { PendingRevocations } from './pending-revocations';
import type { RefreshTokenRepository } from './refresh-token.repository';
import type { RevokedSessions } from './revoked-sessions';

/**
 * A revocation whose transaction failed, and whose pending record Redis did not take either (the
 * data tier away together): the sweeps cannot see what is not recorded, so the deciding process
 * must not give it up after its 10 minutes — it records it again with every renewal of the mark.
 */
/** A session family's id (a UUID, as every record's field is). */
const family = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('PendingRevocations, the record not written when the revocation was decided', () => {
  beforeAll(() => Logger.overrideLogger(false));
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate'] }));
  afterEach(() => jest.useRealTimers());

  function setup() {
    const world = {
      databaseUp: false,
      redisUp: false,
      records: new Map<string, string>(),
      commits: 0,
    };
    const tx = {
      runOwn: jest.fn(async (work: () => Promise<unknown>) => {
        if (!world.databaseUp) throw new Error('connect ECONNREFUSED');
        return work();
      }),
    } as unknown as TransactionHost;
    const refreshTokens = {
      revokeFamily: jest.fn(async () => void world.commits++),
    } as unknown as RefreshTokenRepository;
    const revoked = { add: jest.fn(async () => undefined) } as unknown as RevokedSessions;
    const redis = {
      hset: jest.fn(async (_key: string, field: string, value: string) => {
        if (!world.redisUp) throw new Error('Connection is closed.');
        world.records.set(field, value);
        return 1;
      }),
      hdel: jest.fn(async (_key: string, field: string) => Number(world.records.delete(field))),
      hgetall: jest.fn(async () => Object.fromEntries(world.records)),
    };
    const config = { redis: { keyPrefix: 'spec' } } as AppConfig;
    const pending = new PendingRevocations(tx, refreshTokens, revoked, redis as never, config);
    return { world, pending, redis };
  }

  it('records it once Redis is back (with a renewal of the mark), then leaves it to the sweeps after 10 minutes', async () => {
    const { world, pending, redis } = setup();
    pending.revokeFamily(family(1), 'logout', new Date());
    await jest.advanceTimersByTimeAsync(1_000);
    expect(redis.hset).toHaveBeenCalledTimes(1);
    expect(world.records.size).toBe(0);
    world.redisUp = true;
    await jest.advanceTimersByTimeAsync(31_000);
    expect([...world.records.keys()]).toEqual([family(1)]);
    let settled = false;
    void pending.settled().then(() => (settled = true));
    await jest.advanceTimersByTimeAsync(10 * 60_000);
    expect(settled).toBe(true);
    expect(world.commits).toBe(0);
    // a sweep (any process's) commits it once the database is back
    world.databaseUp = true;
    expect(await pending.sweep()).toBe(1);
    expect(world.records.size).toBe(0);
  });

  it('keeps retrying past 10 minutes while it could not be recorded, and commits it once the database is back', async () => {
    const { world, pending } = setup();
    pending.revokeFamily(family(2), 'reuse-detected', new Date());
    let settled = false;
    void pending.settled().then(() => (settled = true));
    await jest.advanceTimersByTimeAsync(15 * 60_000);
    expect(settled).toBe(false);
    world.databaseUp = true;
    await jest.advanceTimersByTimeAsync(6_000);
    expect(settled).toBe(true);
    expect(world.commits).toBe(1);
  });

  it('at shutdown, records it one last time', async () => {
    const { world, pending } = setup();
    pending.revokeFamily(family(3), 'logout', new Date());
    await jest.advanceTimersByTimeAsync(1_000);
    world.redisUp = true;
    await pending.onApplicationShutdown();
    expect([...world.records.keys()]).toEqual([family(3)]);
  });

  it('a record Redis lost while the deciding process retried (a restart without persistence, a flush) is written again before it hands over', async () => {
    const { world, pending } = setup();
    world.redisUp = true;
    pending.revokeFamily(family(4), 'reuse-detected', new Date());
    await jest.advanceTimersByTimeAsync(1_000);
    expect([...world.records.keys()]).toEqual([family(4)]);
    world.records.clear(); // Redis lost its data
    let settled = false;
    void pending.settled().then(() => (settled = true));
    await jest.advanceTimersByTimeAsync(10 * 60_000 + 10_000);
    expect(settled).toBe(true); // handed over to the sweeps after 10 minutes…
    expect([...world.records.keys()]).toEqual([family(4)]); // …with a record they can see
    world.databaseUp = true;
    expect(await pending.sweep()).toBe(1);
  });

  it('at shutdown, a record Redis lost is written again', async () => {
    const { world, pending } = setup();
    world.redisUp = true;
    pending.revokeFamily(family(5), 'logout', new Date());
    await jest.advanceTimersByTimeAsync(1_000);
    world.records.clear();
    await pending.onApplicationShutdown();
    expect([...world.records.keys()]).toEqual([family(5)]);
  });

  it('a record no revocation could ever commit (its field no session id: written by hand, torn) is removed by a sweep, not tried every 30 s for ever', async () => {
    const { world, pending } = setup();
    world.redisUp = true;
    world.databaseUp = true;
    const record = JSON.stringify({ reason: 'logout', at: new Date().toISOString() });
    world.records.set('not-a-session', record);
    world.records.set(family(6), record);
    expect(await pending.sweep()).toBe(1);
    expect(world.records.size).toBe(0);
    expect(world.commits).toBe(1);
  });
});
