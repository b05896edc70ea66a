import { dueAtOfScore, oldestWaitingAgeSeconds, readWaitingJobs, readySince } from './queue-age';

const NOW = 1_700_000_600_000;

describe('how long a queue has kept its oldest job waiting', () => {
  it('an empty queue: 0', () => {
    expect(oldestWaitingAgeSeconds({ waiting: [] }, NOW)).toBe(0);
  });

  it('a job added to wait: since its creation', () => {
    const job = { timestamp: NOW - 90_000, delay: 0 };
    expect(readySince(job)).toBe(NOW - 90_000);
    expect(oldestWaitingAgeSeconds({ waiting: [job] }, NOW)).toBe(90);
  });

  it('a delayed job (a reservation expiry of 15 minutes): only since its delay ended, not since its creation', () => {
    const due = { timestamp: NOW - 960_000, delay: 900_000 }; // due 60 s ago
    expect(readySince(due)).toBe(NOW - 60_000);
    expect(oldestWaitingAgeSeconds({ waiting: [due] }, NOW)).toBe(60);
    // promoted a moment early (a clock a little ahead, `promote()`): not waiting yet, not negative
    expect(
      oldestWaitingAgeSeconds({ waiting: [{ timestamp: NOW - 1_000, delay: 5_000 }] }, NOW),
    ).toBe(0);
  });

  it('a job back in wait after an attempt (a retry, a stall): since that attempt started, not since its creation', () => {
    const retried = { timestamp: NOW - 86_400_000, delay: 0, processedOn: NOW - 20_000 };
    expect(readySince(retried)).toBe(NOW - 20_000);
    expect(oldestWaitingAgeSeconds({ waiting: [retried] }, NOW)).toBe(20);
  });

  it('the oldest of several (the ends of wait, the heads of the priorities): the longest ready', () => {
    const jobs = [
      { timestamp: NOW - 5_000, delay: 0 }, // wait's newest
      { timestamp: NOW - 400_000, delay: 0 }, // the lowest priority's first: starved
      { timestamp: NOW - 3_000_000, delay: 2_900_000 }, // delayed: ready 100 s ago
    ];
    expect(oldestWaitingAgeSeconds({ waiting: jobs }, NOW)).toBe(400);
  });

  it('a delayed job past its due time that no worker has fetched (still in `delayed`): since it was due', () => {
    // (a worker stopped, crashed or blocked: BullMQ promotes a due job only when a worker fetches)
    expect(oldestWaitingAgeSeconds({ waiting: [], firstDueAt: NOW - 20_000 }, NOW)).toBe(20);
    // the older of it and the waiting jobs
    const waiting = [{ timestamp: NOW - 5_000, delay: 0 }];
    expect(oldestWaitingAgeSeconds({ waiting, firstDueAt: NOW - 20_000 }, NOW)).toBe(20);
    expect(oldestWaitingAgeSeconds({ waiting, firstDueAt: NOW - 1_000 }, NOW)).toBe(5);
  });

  it('a delayed job not yet due does not count (a reservation expiry in 15 minutes, a sweep scheduled)', () => {
    expect(oldestWaitingAgeSeconds({ waiting: [], firstDueAt: NOW + 900_000 }, NOW)).toBe(0);
    const waiting = [{ timestamp: NOW - 5_000, delay: 0 }];
    expect(oldestWaitingAgeSeconds({ waiting, firstDueAt: NOW + 900_000 }, NOW)).toBe(5);
  });

  it("a delayed job's due time from its score: due ms × 0x1000 + a counter below 0x1000 (BullMQ's getDelayedScore)", () => {
    const due = 1_700_000_123_456;
    expect(dueAtOfScore(String(due * 0x1000))).toBe(due);
    expect(dueAtOfScore(String(due * 0x1000 + 0xfff))).toBe(due); // the 4096th job due that ms
    expect(dueAtOfScore(String(due * 0x1000 + 0x1000))).toBe(due + 1);
    expect(dueAtOfScore('')).toBeUndefined();
    expect(dueAtOfScore(undefined)).toBeUndefined();
  });
});

describe('readWaitingJobs (the script answers per queue)', () => {
  const answering = (reply: unknown) => ({ eval: jest.fn(async () => reply) });

  it("sends each queue's wait, paused, prioritized and delayed keys and its job keys' prefix, in one script", async () => {
    const redis = answering([
      [[], ''],
      [[], ''],
    ]);
    expect(await readWaitingJobs(redis, 'p:bull', ['orders', 'email'])).toEqual([
      { waiting: [] },
      { waiting: [] },
    ]);
    expect(redis.eval).toHaveBeenCalledTimes(1);
    expect((redis.eval.mock.calls[0] as unknown[]).slice(1)).toEqual([
      8,
      'p:bull:orders:wait',
      'p:bull:orders:paused',
      'p:bull:orders:prioritized',
      'p:bull:orders:delayed',
      'p:bull:email:wait',
      'p:bull:email:paused',
      'p:bull:email:prioritized',
      'p:bull:email:delayed',
      'p:bull:orders:',
      'p:bull:email:',
    ]);
  });

  it("reads created, attempted and delay, and the first delayed job's due time; leaves out what is not a job", async () => {
    const redis = answering([
      [
        [
          ['1700000000000', '', '0'],
          ['1700000000000', '1700000050000', '0'],
          ['1700000000000', '', '900000'],
          ['', '', '0'],
        ],
        '',
      ],
      [[], String(1_700_000_300_000 * 0x1000 + 7)],
    ]);
    expect(await readWaitingJobs(redis, 'p:bull', ['orders', 'email'])).toEqual([
      {
        waiting: [
          { timestamp: 1_700_000_000_000, delay: 0 },
          { timestamp: 1_700_000_000_000, delay: 0, processedOn: 1_700_000_050_000 },
          { timestamp: 1_700_000_000_000, delay: 900_000 },
        ],
      },
      { waiting: [], firstDueAt: 1_700_000_300_000 },
    ]);
  });
});
