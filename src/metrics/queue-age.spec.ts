import { oldestWaitingAgeSeconds, readWaitingJobs, readySince } from './queue-age';

const NOW = 1_700_000_600_000;

describe('how long a queue has kept its oldest job waiting', () => {
  it('an empty queue: 0', () => {
    expect(oldestWaitingAgeSeconds([], NOW)).toBe(0);
  });

  it('a job added to wait: since its creation', () => {
    const job = { timestamp: NOW - 90_000, delay: 0 };
    expect(readySince(job)).toBe(NOW - 90_000);
    expect(oldestWaitingAgeSeconds([job], NOW)).toBe(90);
  });

  it('a delayed job (a reservation expiry of 15 minutes): only since its delay ended, not since its creation', () => {
    const due = { timestamp: NOW - 960_000, delay: 900_000 }; // due 60 s ago
    expect(readySince(due)).toBe(NOW - 60_000);
    expect(oldestWaitingAgeSeconds([due], NOW)).toBe(60);
    // promoted a moment early (a clock a little ahead, `promote()`): not waiting yet, not negative
    expect(oldestWaitingAgeSeconds([{ timestamp: NOW - 1_000, delay: 5_000 }], NOW)).toBe(0);
  });

  it('a job back in wait after an attempt (a retry, a stall): since that attempt started, not since its creation', () => {
    const retried = { timestamp: NOW - 86_400_000, delay: 0, processedOn: NOW - 20_000 };
    expect(readySince(retried)).toBe(NOW - 20_000);
    expect(oldestWaitingAgeSeconds([retried], NOW)).toBe(20);
  });

  it('the oldest of several (the ends of wait, the heads of the priorities): the longest ready', () => {
    const jobs = [
      { timestamp: NOW - 5_000, delay: 0 }, // wait's newest
      { timestamp: NOW - 400_000, delay: 0 }, // the lowest priority's first: starved
      { timestamp: NOW - 3_000_000, delay: 2_900_000 }, // delayed: ready 100 s ago
    ];
    expect(oldestWaitingAgeSeconds(jobs, NOW)).toBe(400);
  });
});

describe('readWaitingJobs (the script answers per queue)', () => {
  const answering = (reply: unknown) => ({ eval: jest.fn(async () => reply) });

  it("sends each queue's wait, paused and prioritized keys and its job keys' prefix, in one script", async () => {
    const redis = answering([[], []]);
    expect(await readWaitingJobs(redis, 'p:bull', ['orders', 'email'])).toEqual([[], []]);
    expect(redis.eval).toHaveBeenCalledTimes(1);
    expect((redis.eval.mock.calls[0] as unknown[]).slice(1)).toEqual([
      6,
      'p:bull:orders:wait',
      'p:bull:orders:paused',
      'p:bull:orders:prioritized',
      'p:bull:email:wait',
      'p:bull:email:paused',
      'p:bull:email:prioritized',
      'p:bull:orders:',
      'p:bull:email:',
    ]);
  });

  it('reads created, attempted and delay; leaves out what is not a job', async () => {
    const redis = answering([
      [
        ['1700000000000', '', '0'],
        ['1700000000000', '1700000050000', '0'],
        ['1700000000000', '', '900000'],
        ['', '', '0'],
      ],
      [],
    ]);
    expect(await readWaitingJobs(redis, 'p:bull', ['orders', 'email'])).toEqual([
      [
        { timestamp: 1_700_000_000_000, delay: 0 },
        { timestamp: 1_700_000_000_000, delay: 0, processedOn: 1_700_000_050_000 },
        { timestamp: 1_700_000_000_000, delay: 900_000 },
      ],
      [],
    ]);
  });
});
