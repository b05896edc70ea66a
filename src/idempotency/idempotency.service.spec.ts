import { mockOf } from '../../test/support/mocks';
import { IdempotencyRepository } from './idempotency.repository';
import { IdempotencyService } from './idempotency.service';

describe('IdempotencyService#keyInUse (may a request with this key be answered without the normal path?)', () => {
  it('reads every key asked in one event-loop turn in one statement, and answers each', async () => {
    const records = mockOf<IdempotencyRepository>(
      { keysInUse: async () => new Set(['user:u1\nk1', 'user:u2\nk1']) },
      'records',
    );
    const service = new IdempotencyService(records);
    const answers = await Promise.all([
      service.keyInUse('user:u1', 'k1'),
      service.keyInUse('user:u1', 'k2'),
      service.keyInUse('user:u2', 'k1'),
      service.keyInUse('user:u3', 'k1'),
    ]);
    expect(answers).toEqual([true, false, true, false]);
    expect(records.keysInUse).toHaveBeenCalledTimes(1);
    expect(records.keysInUse.mock.calls[0][0]()).toHaveLength(4);
  });

  it('answers "in use" on any doubt: the database failing, or slower than 250 ms', async () => {
    const failing = mockOf<IdempotencyRepository>({
      keysInUse: () => Promise.reject(new Error('ECONNREFUSED')),
    });
    expect(await new IdempotencyService(failing).keyInUse('user:u1', 'k1')).toBe(true);
    const stalled = mockOf<IdempotencyRepository>({
      keysInUse: () => new Promise<Set<string>>(() => undefined),
    });
    const started = Date.now();
    expect(await new IdempotencyService(stalled).keyInUse('user:u1', 'k1')).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_000); // (250 ms, and room for a stall)
  });

  it('an asker whose pair is in a running statement waits for its answer past 250 ms (its lock ends with the statement)', async () => {
    const slow = mockOf<IdempotencyRepository>({
      keysInUse: async (pairs: () => unknown[]) => {
        pairs(); // the statement has its connection and is sent with this pair
        await new Promise((r) => setTimeout(r, 400));
        return new Set<string>();
      },
    });
    expect(await new IdempotencyService(slow).keyInUse('user:u1', 'k1')).toBe(false);
  });

  it('keeps at most 4,096 askers waiting behind a statement that hangs; more are answered "in use" at once', async () => {
    const stalled = mockOf<IdempotencyRepository>({
      keysInUse: () => new Promise<Set<string>>(() => undefined),
    });
    const service = new IdempotencyService(stalled);
    const waiting = Array.from({ length: 4_096 }, (_, i) => service.keyInUse('user:u1', `k${i}`));
    let settled = false;
    const extra = service.keyInUse('user:u1', 'one-more').then((v) => ((settled = true), v));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(true);
    expect(await extra).toBe(true);
    expect(new Set(await Promise.all(waiting))).toEqual(new Set([true])); // after their 250 ms
  });
});

describe('IdempotencyService#purgeExpired (the hourly purge)', () => {
  it('ends while records go on expiring: one cutoff for the whole run, each kind drained once', async () => {
    // a table the day after a sale: a record expires every millisecond of the clock, and every
    // batch takes a little of it (the clock moves on between batches)
    let wall = Date.parse('2026-12-03T10:00:00Z');
    let purgedUpTo = wall - 1_000; // 1,000 records past their expiry when the run starts
    let batches = 0;
    const records = mockOf<IdempotencyRepository>({
      // the database's clock (this process's may be minutes off: it is not asked)
      databaseNow: async () => new Date(wall),
      purgeExpired: async (now: Date) => {
        if (++batches > 100) throw new Error('the purge does not end');
        wall += 5;
        const due = Math.min(now.getTime() - purgedUpTo, 1_000);
        purgedUpTo += due;
        return due;
      },
      purgeBodies: async () => ((wall += 5), 0),
      purgeAbandoned: async () => ((wall += 5), 0),
    });
    const removed = await new IdempotencyService(records).purgeExpired();
    expect(removed).toBe(1_000);
    const cutoffs = new Set(records.purgeExpired.mock.calls.map(([now]) => now.getTime()));
    expect(cutoffs.size).toBe(1);
    // the bodies after the records, by the same cutoff (a body lives as long as its latest key)
    expect(records.purgeBodies.mock.calls.map(([now]) => now.getTime())).toEqual([...cutoffs]);
    expect(records.purgeAbandoned).toHaveBeenCalledTimes(1);
  });
});
